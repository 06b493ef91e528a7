import { useEffect, useState, type FormEvent } from 'react';
import { call, client } from '../api/client';
import { asApiError, type ApiError } from '../api/errors';
import type { AuditRecord, VerifyResult } from '../api/types';
import { formatTime } from '../components/Badge';
import { ErrorBox } from '../components/ErrorBox';
import { TextField } from '../components/Field';
import { Page } from '../components/Page';

export function Audit() {
  const [verify, setVerify] = useState<VerifyResult | null>(null);
  const [verifyError, setVerifyError] = useState<ApiError | null>(null);
  const [records, setRecords] = useState<AuditRecord[] | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [filters, setFilters] = useState({ eventType: '', subject: '' });
  const [fType, setFType] = useState('');
  const [fSubject, setFSubject] = useState('');
  const [tokens, setTokens] = useState<string[]>([]);
  const [pageToken, setPageToken] = useState('');
  const [next, setNext] = useState('');
  const [loading, setLoading] = useState(false);
  const [verifying, setVerifying] = useState(false);

  const runVerify = async () => {
    setVerifying(true);
    setVerifyError(null);
    try {
      setVerify(await call(() => client.GET('/v1/audit/chain:verify')));
    } catch (e) {
      setVerifyError(asApiError(e));
    } finally {
      setVerifying(false);
    }
  };

  useEffect(() => {
    void runVerify();
  }, []);

  useEffect(() => {
    let live = true;
    setLoading(true);
    setError(null);
    call(() =>
      client.GET('/v1/audit/records', {
        params: {
          query: {
            pageSize: 50,
            ...(pageToken ? { pageToken } : {}),
            ...(filters.eventType ? { eventType: filters.eventType } : {}),
            ...(filters.subject ? { subject: filters.subject } : {}),
          },
        },
      }),
    )
      .then((data) => {
        if (!live) return;
        setRecords(data.records ?? []);
        setNext(data.nextPageToken ?? '');
      })
      .catch((e) => live && setError(asApiError(e)))
      .finally(() => live && setLoading(false));
    return () => {
      live = false;
    };
  }, [filters, pageToken]);

  const apply = (e: FormEvent) => {
    e.preventDefault();
    setTokens([]);
    setPageToken('');
    setFilters({ eventType: fType.trim(), subject: fSubject.trim() });
  };

  return (
    <Page title="Audit log" wide>
      <section aria-labelledby="chain" className="panel">
        <h2 id="chain">Chain verification</h2>
        <ErrorBox error={verifyError} />
        {verify && (
          <p className={verify.ok ? 'verify verify-ok' : 'verify verify-bad'} role="status" data-testid="chain-status">
            {verify.ok ? (
              <>
                <strong>Chain verified.</strong> {verify.recordsChecked ?? '0'} records checked; the head is record{' '}
                {verify.headSeq ?? '0'} (<code>{(verify.headHash ?? '').slice(0, 16)}…</code>).
              </>
            ) : (
              <>
                <strong>The chain is broken</strong> at record {verify.firstInvalidSeq ?? '?'}: {verify.reason}
              </>
            )}
          </p>
        )}
        <button type="button" className="secondary" onClick={runVerify} disabled={verifying}>
          Verify again
        </button>
      </section>
      <form role="search" aria-label="Filter audit records" onSubmit={apply} noValidate className="filters">
        <TextField
          label="Event type"
          hint="Exact, e.g. cloudsec.events.v1.DocumentCreated"
          value={fType}
          onChange={(e) => setFType(e.target.value)}
        />
        <TextField
          label="Subject"
          hint="A document or user id"
          value={fSubject}
          onChange={(e) => setFSubject(e.target.value)}
        />
        <div className="actions">
          <button type="submit">Apply filters</button>
        </div>
      </form>
      <ErrorBox error={error} />
      {records && (
        <div className="table-wrap" role="region" aria-label="Table of audit records" tabIndex={0}>
          <table data-testid="audit-table" aria-busy={loading}>
            <caption>
              Records, oldest first (page {tokens.length + 1}): {records.length}
            </caption>
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">When</th>
                <th scope="col">Event</th>
                <th scope="col">Subject</th>
                <th scope="col">Actor</th>
                <th scope="col">Hash</th>
              </tr>
            </thead>
            <tbody>
              {records.length === 0 && (
                <tr>
                  <td colSpan={6}>No records.</td>
                </tr>
              )}
              {records.map((r) => (
                <tr key={r.seq}>
                  <td className="nowrap">{r.seq}</td>
                  <td>{formatTime(r.occurTime)}</td>
                  <td>
                    <span className="event-type">{(r.eventType ?? '').replace(/^cloudsec\.events\.v1\./, '')}</span>
                    <details>
                      <summary>Details</summary>
                      <pre>{JSON.stringify(r.summary ?? {}, null, 2)}</pre>
                    </details>
                  </td>
                  <td>
                    <code>{r.subject}</code>
                  </td>
                  <td>
                    <code>{r.actor}</code>
                  </td>
                  <td>
                    <code title={r.hash}>{(r.hash ?? '').slice(0, 12)}</code>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <nav className="pager" aria-label="Pages">
        <button
          type="button"
          className="secondary"
          disabled={tokens.length === 0 || loading}
          onClick={() => {
            const prev = [...tokens];
            setPageToken(prev.pop() ?? '');
            setTokens(prev);
          }}
        >
          Previous page
        </button>
        <button
          type="button"
          className="secondary"
          disabled={!next || loading}
          onClick={() => {
            setTokens([...tokens, pageToken]);
            setPageToken(next);
          }}
        >
          Next page
        </button>
      </nav>
    </Page>
  );
}
