import { useEffect, useRef } from 'react';
import type { ApiError } from '../api/errors';

/** Seconds as words: "45 seconds", "2 minutes 5 seconds". */
export function formatSeconds(total: number): string {
  const s = Math.max(0, Math.round(total));
  const m = Math.floor(s / 60);
  const r = s % 60;
  const part = (n: number, unit: string) => `${n} ${unit}${n === 1 ? '' : 's'}`;
  if (m === 0) return part(r, 'second');
  return r === 0 ? part(m, 'minute') : `${part(m, 'minute')} ${part(r, 'second')}`;
}

/**
 * An API failure in words: what happened, the server's message, the fields
 * at fault, when to try again, and the request id to quote to support.
 */
export function ErrorBox({ error, title }: { error: ApiError | null; title?: string }) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (error) ref.current?.focus();
  }, [error]);
  if (!error) return null;
  const retryAt =
    error.retryAfterSeconds !== null ? new Date(Date.now() + error.retryAfterSeconds * 1000) : null;
  return (
    <div className="error-box" role="alert" tabIndex={-1} ref={ref} data-testid="api-error">
      <p className="error-title">
        <strong>{title ?? error.summary}</strong>
      </p>
      {error.message && error.message !== error.summary && <p className="error-message">{error.message}</p>}
      {error.fieldViolations.length > 0 && (
        <ul className="error-fields">
          {error.fieldViolations.map((v, i) => (
            <li key={i}>
              {v.field ? <code>{v.field}</code> : null} {v.description}
            </li>
          ))}
        </ul>
      )}
      {retryAt && error.retryAfterSeconds !== null && (
        <p className="error-retry" data-testid="retry-after">
          Try again in {formatSeconds(error.retryAfterSeconds)} (after {retryAt.toLocaleTimeString()}).
        </p>
      )}
      <p className="error-meta">
        {error.status > 0 ? `HTTP ${error.status}` : 'No answer'}
        {error.codeName ? ` · ${error.codeName}` : ''}
        {error.requestId ? (
          <>
            {' · '}Request id for support: <code data-testid="request-id">{error.requestId}</code>
          </>
        ) : null}
      </p>
    </div>
  );
}

/** A short success or information message, announced politely. */
export function Notice({ children }: { children: React.ReactNode }) {
  if (!children) return null;
  return (
    <p className="notice" role="status">
      {children}
    </p>
  );
}
