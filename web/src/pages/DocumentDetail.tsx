import { useCallback, useEffect, useState } from 'react';
import { call, client } from '../api/client';
import { asApiError, type ApiError } from '../api/errors';
import { text, type Document } from '../api/types';
import { ClassificationBadge, Labels, formatTime } from '../components/Badge';
import { DocumentForm, changedFields, patchBody, type DocumentInput } from '../components/DocumentForm';
import { ErrorBox, Notice } from '../components/ErrorBox';
import { Page } from '../components/Page';
import { flash, takeFlash } from '../lib/flash';
import { formatLabels } from '../lib/labels';
import { useTake } from '../lib/useTake';
import { formatBytes } from '../lib/validate';
import { Link, navigate } from '../router';
import { canUseRestricted, useSession } from '../session';

type Mode =
  | { kind: 'view' }
  | { kind: 'edit' }
  | { kind: 'conflict'; mine: DocumentInput; mask: string[]; latest: Document }
  | { kind: 'delete' };

function getDocument(id: string) {
  return call(() => client.GET('/v1/documents/{id}', { params: { path: { id } } }));
}

function updateDocument(id: string, input: DocumentInput, mask: string[], etag: string) {
  return call(() =>
    client.PATCH('/v1/documents/{id}', {
      params: { path: { id }, query: { updateMask: mask.join(',') } },
      body: patchBody(input, mask, etag),
    }),
  );
}

export function DocumentDetail({ id }: { id: string }) {
  const session = useSession();
  const arrived = useTake(takeFlash);
  const [notice, setNotice] = useState(arrived);
  const [doc, setDoc] = useState<Document | null>(null);
  const [mode, setMode] = useState<Mode>({ kind: 'view' });
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  const load = useCallback(async () => {
    setError(null);
    try {
      setDoc(await getDocument(id));
    } catch (e) {
      setError(asApiError(e));
    }
  }, [id]);

  useEffect(() => {
    void load();
  }, [load]);

  const onConflict = async (mine: DocumentInput, mask: string[]) => {
    const latest = await getDocument(id);
    setDoc(latest);
    setMode({ kind: 'conflict', mine, mask, latest });
  };

  const save = async (input: DocumentInput) => {
    if (!doc) return;
    const mask = changedFields(doc, input);
    setNotice('');
    setError(null);
    if (mask.length === 0) {
      setMode({ kind: 'view' });
      setNotice('Nothing changed.');
      return;
    }
    setBusy(true);
    try {
      setDoc(await updateDocument(id, input, mask, doc.etag ?? ''));
      setMode({ kind: 'view' });
      setNotice('Saved.');
    } catch (e) {
      const err = asApiError(e);
      if (err.isConflict) {
        try {
          await onConflict(input, mask);
        } catch (e2) {
          setError(asApiError(e2));
        }
      } else {
        setError(err);
      }
    } finally {
      setBusy(false);
    }
  };

  const saveOverLatest = async () => {
    if (mode.kind !== 'conflict') return;
    setBusy(true);
    setError(null);
    try {
      setDoc(await updateDocument(id, mode.mine, mode.mask, mode.latest.etag ?? ''));
      setMode({ kind: 'view' });
      setNotice('Saved your changes on top of the latest version.');
    } catch (e) {
      const err = asApiError(e);
      if (err.isConflict) {
        // Changed yet again: show the newest version.
        try {
          await onConflict(mode.mine, mode.mask);
        } catch (e2) {
          setError(asApiError(e2));
        }
      } else {
        setError(err);
      }
    } finally {
      setBusy(false);
    }
  };

  const remove = async () => {
    if (!doc) return;
    setBusy(true);
    setError(null);
    try {
      await call(() =>
        client.DELETE('/v1/documents/{id}', { params: { path: { id }, query: { etag: doc.etag ?? '' } } }),
      );
      flash(`Deleted "${doc.title ?? ''}".`);
      navigate('/documents');
    } catch (e) {
      const err = asApiError(e);
      if (err.isConflict) {
        await load();
        setMode({ kind: 'view' });
        setNotice('The document changed since you opened it. Here is the latest version; delete it again if you still want to.');
      } else {
        setError(err);
      }
    } finally {
      setBusy(false);
    }
  };

  const title = doc?.title ? doc.title : 'Document';

  return (
    <Page title={mode.kind === 'edit' ? `Edit: ${title}` : title}>
      <p>
        <Link to="/documents">Back to documents</Link>
      </p>
      <Notice>{notice}</Notice>
      <ErrorBox error={error} />
      {doc && mode.kind === 'view' && (
        <>
          <DocumentFacts doc={doc} />
          <div className="actions">
            <button type="button" onClick={() => setMode({ kind: 'edit' })}>
              Edit
            </button>
            <button type="button" className="danger" onClick={() => setMode({ kind: 'delete' })}>
              Delete
            </button>
          </div>
          <h2>Content</h2>
          <pre className="content" data-testid="document-content">
            {doc.content}
          </pre>
        </>
      )}
      {doc && mode.kind === 'edit' && (
        <DocumentForm
          initial={doc}
          submitLabel="Save changes"
          onSubmit={save}
          onCancel={() => setMode({ kind: 'view' })}
          busy={busy}
          error={error}
          allowRestricted={canUseRestricted(session)}
        />
      )}
      {doc && mode.kind === 'delete' && (
        <div className="panel panel-danger" role="alertdialog" aria-labelledby="confirm-delete" aria-describedby="confirm-delete-text">
          <h2 id="confirm-delete">Delete this document?</h2>
          <p id="confirm-delete-text">
            Deleting “{doc.title}” destroys the key of its content: it cannot be undone.
          </p>
          <div className="actions">
            <button type="button" className="danger" onClick={remove} disabled={busy} autoFocus>
              Delete for good
            </button>
            <button type="button" className="secondary" onClick={() => setMode({ kind: 'view' })}>
              Keep it
            </button>
          </div>
        </div>
      )}
      {mode.kind === 'conflict' && (
        <ConflictPanel
          mine={mode.mine}
          mask={mode.mask}
          latest={mode.latest}
          busy={busy}
          onSaveMine={saveOverLatest}
          onEditLatest={() => setMode({ kind: 'edit' })}
          onDiscard={() => {
            setMode({ kind: 'view' });
            setNotice('Your changes were discarded; this is the latest version.');
          }}
        />
      )}
    </Page>
  );
}

function DocumentFacts({ doc }: { doc: Document }) {
  return (
    <dl className="facts">
      <dt>Classification</dt>
      <dd>
        <ClassificationBadge value={doc.classification} />
      </dd>
      <dt>Labels</dt>
      <dd>
        <Labels labels={doc.labels} />
      </dd>
      <dt>Content type</dt>
      <dd>{text(doc.contentType)}</dd>
      <dt>Size</dt>
      <dd>{formatBytes(Number(doc.sizeBytes ?? 0))}</dd>
      <dt>Created</dt>
      <dd>{formatTime(doc.createTime)}</dd>
      <dt>Updated</dt>
      <dd>{formatTime(doc.updateTime)}</dd>
      <dt>Owner</dt>
      <dd>
        <code>{doc.owner}</code>
      </dd>
      <dt>Version (etag)</dt>
      <dd>
        <code>{doc.etag}</code>
      </dd>
    </dl>
  );
}

const FIELDS: { path: string; label: string; get: (d: DocumentInput | Document) => string }[] = [
  { path: 'title', label: 'Title', get: (d) => d.title ?? '' },
  { path: 'classification', label: 'Classification', get: (d) => d.classification ?? '' },
  { path: 'labels', label: 'Labels', get: (d) => formatLabels(d.labels) },
  { path: 'content_type', label: 'Content type', get: (d) => text(d.contentType) },
  { path: 'content', label: 'Content', get: (d) => d.content ?? '' },
];

/** Both versions side by side: what this person changed, and what is stored now. */
export function ConflictPanel({
  mine,
  mask,
  latest,
  busy,
  onSaveMine,
  onEditLatest,
  onDiscard,
}: {
  mine: DocumentInput;
  mask: string[];
  latest: Document;
  busy: boolean;
  onSaveMine: () => void;
  onEditLatest: () => void;
  onDiscard: () => void;
}) {
  return (
    <div className="panel panel-warning" data-testid="conflict" role="region" aria-labelledby="conflict-title">
      <h2 id="conflict-title" tabIndex={-1}>
        Someone else changed this document
      </h2>
      <p>
        It was saved by someone else ({formatTime(latest.updateTime)}) after you opened it, so your changes were not
        saved. Compare the two versions and choose.
      </p>
      <div className="table-wrap" role="region" aria-label="Both versions" tabIndex={0}>
        <table className="compare">
          <thead>
            <tr>
              <th scope="col">Field</th>
              <th scope="col">Your version</th>
              <th scope="col">Latest saved version</th>
            </tr>
          </thead>
          <tbody>
            {FIELDS.map((f) => {
              const changedByMe = mask.includes(f.path);
              const ours = changedByMe ? f.get(mine) : f.get(latest);
              const theirs = f.get(latest);
              return (
                <tr key={f.path} className={ours !== theirs ? 'differs' : undefined}>
                  <th scope="row">
                    {f.label}
                    {ours !== theirs ? <span className="visually-hidden"> (differs)</span> : null}
                  </th>
                  <td>
                    <pre data-testid={`mine-${f.path}`}>{ours}</pre>
                    {!changedByMe && <span className="muted">(not changed by you)</span>}
                  </td>
                  <td>
                    <pre data-testid={`latest-${f.path}`}>{theirs}</pre>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      <div className="actions">
        <button type="button" onClick={onSaveMine} disabled={busy}>
          Save my changes on the latest version
        </button>
        <button type="button" className="secondary" onClick={onEditLatest} disabled={busy}>
          Edit the latest version
        </button>
        <button type="button" className="secondary" onClick={onDiscard} disabled={busy}>
          Discard my changes
        </button>
      </div>
    </div>
  );
}
