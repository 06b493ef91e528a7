import { describe, expect, it } from 'vitest';
import { match } from './router';

describe('match', () => {
  it('binds parameters and refuses other paths', () => {
    expect(match('/documents/:id', '/documents/abc%20d')).toEqual({ id: 'abc d' });
    expect(match('/documents/:id', '/documents')).toBeNull();
    expect(match('/documents/:id', '/audit/x')).toBeNull();
    expect(match('/documents/:id', '/documents/%E0%A4%A')).toBeNull();
  });
});
