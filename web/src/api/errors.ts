// Turns what the gateway answers on failure ({code, message, details},
// x-request-id, Retry-After) into one value the pages show in words.

export interface FieldViolation {
  field: string;
  description: string;
}

const CODE_NAMES = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;

/** What a person is told, per gRPC code, before the server's own message. */
const CODE_WORDS: Record<number, string> = {
  1: 'The request was cancelled.',
  2: 'The server failed unexpectedly.',
  3: 'Some of what you entered is not valid.',
  4: 'The server took too long to answer.',
  5: 'It was not found (or you may not see it).',
  6: 'It already exists.',
  7: 'You are not allowed to do this.',
  8: 'Too many attempts.',
  9: 'This cannot be done in the current state.',
  10: 'It changed in the meantime.',
  11: 'A value is out of range.',
  12: 'The server does not support this.',
  13: 'The server failed unexpectedly.',
  14: 'The service is unavailable right now; try again shortly.',
  15: 'The server lost data.',
  16: 'You are not signed in, or your session has ended.',
};

export class ApiError extends Error {
  /** HTTP status; 0 when no answer came. */
  readonly status: number;
  /** google.rpc.Code, when the body had one. */
  readonly code: number | null;
  readonly fieldViolations: FieldViolation[];
  /** From RetryInfo or Retry-After, in whole seconds (rounded up). */
  readonly retryAfterSeconds: number | null;
  readonly requestId: string;

  constructor(init: {
    status: number;
    code: number | null;
    message: string;
    fieldViolations?: FieldViolation[];
    retryAfterSeconds?: number | null;
    requestId: string;
  }) {
    super(init.message);
    this.name = 'ApiError';
    this.status = init.status;
    this.code = init.code;
    this.fieldViolations = init.fieldViolations ?? [];
    this.retryAfterSeconds = init.retryAfterSeconds ?? null;
    this.requestId = init.requestId;
  }

  get codeName(): string {
    return this.code !== null ? (CODE_NAMES[this.code] ?? `code ${this.code}`) : '';
  }

  /** One sentence that says what happened, in words. */
  get summary(): string {
    if (this.status === 0) return 'The server could not be reached.';
    const words = this.code !== null ? CODE_WORDS[this.code] : undefined;
    return words ?? `The request failed (HTTP ${this.status}).`;
  }

  /** A stale etag: the document changed since it was read. */
  get isConflict(): boolean {
    return this.status === 409 && (this.code === 10 || this.code === null);
  }

  /** The violation of one field, matched on its last path segment, in either spelling. */
  fieldError(name: string): string | undefined {
    const want = normaliseField(name);
    const hit = this.fieldViolations.find((v) => {
      const f = normaliseField(v.field);
      return f === want || f.endsWith(`.${want}`);
    });
    return hit?.description;
  }
}

function normaliseField(field: string): string {
  return field.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()).toLowerCase();
}

/** "1.5s", "30s", "0.000100s" (proto3 JSON Duration) to seconds. */
export function parseDuration(value: unknown): number | null {
  if (typeof value !== 'string') return null;
  const m = /^(-?\d+(?:\.\d+)?)s$/.exec(value.trim());
  if (!m) return null;
  const n = Number(m[1]);
  return Number.isFinite(n) ? n : null;
}

interface Detail {
  '@type'?: unknown;
  fieldViolations?: unknown;
  retryDelay?: unknown;
}

/** Builds the error from an HTTP answer and its (already parsed) body. */
export function errorFromResponse(response: Response, body: unknown, sentRequestId: string): ApiError {
  const requestId = response.headers.get('x-request-id') || sentRequestId;
  let code: number | null = null;
  let message = '';
  const fieldViolations: FieldViolation[] = [];
  let retry: number | null = null;
  if (body && typeof body === 'object') {
    const b = body as { code?: unknown; message?: unknown; details?: unknown };
    if (typeof b.code === 'number') code = b.code;
    if (typeof b.message === 'string') message = b.message;
    if (Array.isArray(b.details)) {
      for (const d of b.details as Detail[]) {
        const type = typeof d?.['@type'] === 'string' ? (d['@type'] as string) : '';
        if (type.endsWith('google.rpc.BadRequest') && Array.isArray(d.fieldViolations)) {
          for (const v of d.fieldViolations as { field?: unknown; description?: unknown }[]) {
            fieldViolations.push({
              field: typeof v?.field === 'string' ? v.field : '',
              description: typeof v?.description === 'string' ? v.description : '',
            });
          }
        } else if (type.endsWith('google.rpc.RetryInfo')) {
          retry = parseDuration(d.retryDelay);
        }
      }
    }
  } else if (typeof body === 'string' && body.trim() !== '') {
    message = body.trim().slice(0, 500);
  }
  if (retry === null) {
    const header = response.headers.get('retry-after');
    if (header && /^\d+$/.test(header.trim())) retry = Number(header.trim());
  }
  return new ApiError({
    status: response.status,
    code,
    message: message || response.statusText || `HTTP ${response.status}`,
    fieldViolations,
    retryAfterSeconds: retry !== null ? Math.max(1, Math.ceil(retry)) : null,
    requestId,
  });
}

export function networkError(cause: unknown, sentRequestId: string): ApiError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new ApiError({
    status: 0,
    code: null,
    message: `No answer from the server (${detail}).`,
    requestId: sentRequestId,
  });
}

/** Any thrown value as an ApiError, so that every failure is shown the same way. */
export function asApiError(e: unknown): ApiError {
  if (e instanceof ApiError) return e;
  return new ApiError({
    status: 0,
    code: null,
    message: e instanceof Error ? e.message : String(e),
    requestId: '',
  });
}
