import { useState } from 'react';
import { call, client } from '../api/client';
import { asApiError, type ApiError } from '../api/errors';
import { DocumentForm, type DocumentInput } from '../components/DocumentForm';
import { Page } from '../components/Page';
import { flash } from '../lib/flash';
import { Link, navigate } from '../router';
import { canUseRestricted, useSession } from '../session';

export function DocumentNew() {
  const session = useSession();
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  const create = async (input: DocumentInput) => {
    setBusy(true);
    setError(null);
    try {
      const doc = await call(() => client.POST('/v1/documents', { body: input }));
      flash('Document created.');
      navigate(`/documents/${encodeURIComponent(doc.id ?? '')}`);
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <Page title="New document">
      <p>
        <Link to="/documents">Back to documents</Link>
      </p>
      <DocumentForm
        submitLabel="Create document"
        onSubmit={create}
        busy={busy}
        error={error}
        allowRestricted={canUseRestricted(session)}
      />
    </Page>
  );
}
