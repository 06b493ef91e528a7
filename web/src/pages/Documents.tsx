import { useEffect, useState, type FormEvent } from 'react';
import { call, client } from '../api/client';
import { asApiError, type ApiError } from '../api/errors';
import { CLASSIFICATIONS, type Classification, type Document } from '../api/types';
import { ClassificationBadge, Labels, formatTime } from '../components/Badge';
import { ErrorBox, Notice } from '../components/ErrorBox';
import { SelectField, TextField } from '../components/Field';
import { Page } from '../components/Page';
import { takeFlash } from '../lib/flash';
import { useTake } from '../lib/useTake';
import { formatBytes } from '../lib/validate';
import { Link, navigate, useLocation } from '../router';
import { canUseRestricted, useSession } from '../session';

const PAGE_SIZES = [10, 20, 50, 100];

export function Documents() {
  const session = useSession();
  const notice = useTake(takeFlash);
  const { query } = useLocation();
  const classification = query.get('classification') ?? '';
  const label = query.get('label') ?? '';
  const pageSize = Number(query.get('pageSize') ?? '20') || 20;

  // The page token, and the tokens of the pages before it (for "Previous"),
  // for one set of filters: new filters start again at the first page.
  const filterKey = `${classification}|${label}|${pageSize}`;
  const [paging, setPaging] = useState({ key: filterKey, stack: [] as string[], token: '' });
  const current = paging.key === filterKey ? paging : { key: filterKey, stack: [] as string[], token: '' };
  const pageToken = current.token;
  const tokens = current.stack;
  const [docs, setDocs] = useState<Document[] | null>(null);
  const [next, setNext] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  const [loading, setLoading] = useState(false);

  // The filter form's own state; applied on submit.
  const [fClass, setFClass] = useState(classification);
  const [fLabel, setFLabel] = useState(label);
  const [fSize, setFSize] = useState(String(pageSize));

  useEffect(() => {
    let live = true;
    setLoading(true);
    setError(null);
    call(() =>
      client.GET('/v1/documents', {
        params: {
          query: {
            pageSize,
            ...(pageToken ? { pageToken } : {}),
            ...(classification ? { classification: classification as Classification } : {}),
            ...(label ? { label } : {}),
          },
        },
      }),
    )
      .then((data) => {
        if (!live) return;
        setDocs(data.documents ?? []);
        setNext(data.nextPageToken ?? '');
        performance.mark('documents-list-ready');
      })
      .catch((e) => live && setError(asApiError(e)))
      .finally(() => live && setLoading(false));
    return () => {
      live = false;
    };
  }, [classification, label, pageSize, pageToken]);

  const applyFilters = (e: FormEvent) => {
    e.preventDefault();
    const q = new URLSearchParams();
    if (fClass) q.set('classification', fClass);
    if (fLabel.trim()) q.set('label', fLabel.trim());
    if (fSize !== '20') q.set('pageSize', fSize);
    const s = q.toString();
    navigate(`/documents${s ? `?${s}` : ''}`);
  };

  const allowRestricted = canUseRestricted(session);
  const pageNumber = tokens.length + 1;

  return (
    <Page title="Documents" wide>
      <Notice>{notice}</Notice>
      <div className="toolbar">
        <Link to="/documents/new" className="button">
          New document
        </Link>
      </div>
      <form role="search" aria-label="Filter documents" onSubmit={applyFilters} noValidate className="filters">
        <SelectField label="Classification" value={fClass} onChange={(e) => setFClass(e.target.value)}>
          <option value="">Any</option>
          {CLASSIFICATIONS.filter((c) => c !== 'RESTRICTED' || allowRestricted).map((c) => (
            <option key={c} value={c}>
              {c.charAt(0) + c.slice(1).toLowerCase()}
            </option>
          ))}
        </SelectField>
        <TextField
          label="Label"
          hint='"key" or "key=value"'
          value={fLabel}
          onChange={(e) => setFLabel(e.target.value)}
        />
        <SelectField label="Per page" value={fSize} onChange={(e) => setFSize(e.target.value)}>
          {PAGE_SIZES.map((n) => (
            <option key={n} value={String(n)}>
              {n}
            </option>
          ))}
        </SelectField>
        <div className="actions">
          <button type="submit">Apply filters</button>
        </div>
      </form>
      <ErrorBox error={error} />
      {docs && (
        <div className="table-wrap" role="region" aria-label="Table of documents" tabIndex={0}>
          <table data-testid="documents-table" aria-busy={loading}>
            <caption>
              Page {pageNumber}
              {classification || label ? ', filtered' : ''}: {docs.length} document{docs.length === 1 ? '' : 's'}
            </caption>
            <thead>
              <tr>
                <th scope="col">Title</th>
                <th scope="col">Classification</th>
                <th scope="col">Labels</th>
                <th scope="col">Updated</th>
                <th scope="col">Size</th>
              </tr>
            </thead>
            <tbody>
              {docs.length === 0 && (
                <tr>
                  <td colSpan={5}>No documents{classification || label ? ' match these filters' : ' yet'}.</td>
                </tr>
              )}
              {docs.map((d) => (
                <tr key={d.id}>
                  <td>
                    <Link to={`/documents/${encodeURIComponent(d.id ?? '')}`}>{d.title}</Link>
                  </td>
                  <td>
                    <ClassificationBadge value={d.classification} />
                  </td>
                  <td>
                    <Labels labels={d.labels} />
                  </td>
                  <td>{formatTime(d.updateTime)}</td>
                  <td>{formatBytes(Number(d.sizeBytes ?? 0))}</td>
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
            const stack = [...tokens];
            const token = stack.pop() ?? '';
            setPaging({ key: filterKey, stack, token });
          }}
        >
          Previous page
        </button>
        <button
          type="button"
          className="secondary"
          disabled={!next || loading}
          onClick={() => setPaging({ key: filterKey, stack: [...tokens, pageToken], token: next })}
        >
          Next page
        </button>
      </nav>
    </Page>
  );
}
