import { describe, expect, it } from 'vitest';
import { ApiError, errorFromResponse, networkError, parseDuration } from './errors';

function response(status: number, headers: Record<string, string> = {}) {
  return new Response(null, { status, headers });
}

describe('errorFromResponse', () => {
  it('reads the code, message, field violations and the request id', () => {
    const err = errorFromResponse(
      response(400, { 'x-request-id': 'abc-123' }),
      {
        code: 3,
        message: 'missing required fields: document.title',
        details: [
          {
            '@type': 'type.googleapis.com/google.rpc.BadRequest',
            fieldViolations: [{ field: 'document.title', description: 'is required' }],
          },
        ],
      },
      'sent-1',
    );
    expect(err.status).toBe(400);
    expect(err.codeName).toBe('INVALID_ARGUMENT');
    expect(err.message).toContain('document.title');
    expect(err.requestId).toBe('abc-123');
    expect(err.fieldError('title')).toBe('is required');
    expect(err.summary).toMatch(/not valid/);
  });

  it('matches snake_case violations to camelCase names', () => {
    const err = errorFromResponse(
      response(400),
      {
        code: 3,
        message: 'x',
        details: [
          {
            '@type': 'type.googleapis.com/google.rpc.BadRequest',
            fieldViolations: [{ field: 'previous_password', description: 'is wrong' }],
          },
        ],
      },
      'sent',
    );
    expect(err.fieldError('previousPassword')).toBe('is wrong');
    expect(err.fieldError('password')).toBeUndefined();
  });

  it('falls back to the id the page sent', () => {
    expect(errorFromResponse(response(500), { code: 13, message: 'boom' }, 'sent-2').requestId).toBe('sent-2');
  });

  it('takes the retry delay from RetryInfo, rounded up', () => {
    const err = errorFromResponse(
      response(429),
      {
        code: 8,
        message: 'too many failed attempts, try again in 30 s',
        details: [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '29.2s' }],
      },
      's',
    );
    expect(err.retryAfterSeconds).toBe(30);
    expect(err.codeName).toBe('RESOURCE_EXHAUSTED');
  });

  it('else from Retry-After', () => {
    const err = errorFromResponse(response(429, { 'retry-after': '7' }), { code: 8, message: 'slow down' }, 's');
    expect(err.retryAfterSeconds).toBe(7);
  });

  it('keeps a text body as the message', () => {
    const err = errorFromResponse(response(502), 'Bad gateway from the proxy', 's');
    expect(err.code).toBeNull();
    expect(err.message).toBe('Bad gateway from the proxy');
    expect(err.summary).toBe('The request failed (HTTP 502).');
  });

  it('knows a stale etag', () => {
    expect(errorFromResponse(response(409), { code: 10, message: 'etag' }, 's').isConflict).toBe(true);
    expect(errorFromResponse(response(409), { code: 6, message: 'exists' }, 's').isConflict).toBe(false);
  });
});

describe('networkError', () => {
  it('says that no answer came, with the id sent', () => {
    const err = networkError(new TypeError('Failed to fetch'), 'console-1');
    expect(err).toBeInstanceOf(ApiError);
    expect(err.status).toBe(0);
    expect(err.summary).toBe('The server could not be reached.');
    expect(err.requestId).toBe('console-1');
  });
});

describe('parseDuration', () => {
  it('reads proto3 JSON durations', () => {
    expect(parseDuration('30s')).toBe(30);
    expect(parseDuration('1.500s')).toBe(1.5);
    expect(parseDuration('soon')).toBeNull();
    expect(parseDuration(5)).toBeNull();
  });
});
