import { describe, expect, it } from 'vitest';
import * as v from './validate';

describe('validate', () => {
  it('names empty and oversized fields in words', () => {
    expect(v.required('  ', 'Title')).toBe('Title is required.');
    expect(v.maxChars('x'.repeat(201), 200, 'Title')).toBe('Title must be at most 200 characters (it has 201).');
    expect(v.maxBytes('é'.repeat(10), 10, 'Content')).toBe('Content must be at most 10 bytes (it has 20).');
    expect(v.email('nobody')).toMatch(/name@example.com/);
    expect(v.email('a@b.c')).toBeUndefined();
  });

  it('formats sizes', () => {
    expect(v.formatBytes(512)).toBe('512 bytes');
    expect(v.formatBytes(2048)).toBe('2 KiB');
    expect(v.formatBytes(1024 * 1024 + 1)).toBe('1 MiB');
  });
});
