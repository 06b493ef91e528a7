import { useState, type FormEvent } from 'react';
import { call, client } from '../api/client';
import { asApiError, type ApiError } from '../api/errors';
import { ErrorBox, Notice } from '../components/ErrorBox';
import { TextField } from '../components/Field';
import { Page } from '../components/Page';
import { flash, takeFlash } from '../lib/flash';
import { useTake } from '../lib/useTake';
import * as v from '../lib/validate';
import { Link, navigate, useLocation } from '../router';

export function Confirm() {
  const { query } = useLocation();
  const arrived = useTake(takeFlash);
  const [notice, setNotice] = useState(arrived);
  const [email, setEmail] = useState(query.get('email') ?? '');
  const [codeValue, setCode] = useState('');
  const [errors, setErrors] = useState<v.Errors>({});
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const found = v.collect({ email: v.email(email), code: v.code(codeValue, 'Confirmation code') });
    setErrors(found);
    setError(null);
    setNotice('');
    if (v.hasErrors(found)) return;
    setBusy(true);
    try {
      await call(
        () => client.POST('/v1/auth:confirmSignUp', { body: { email: email.trim(), code: codeValue.trim() } }),
        { auth: false },
      );
      flash('Your email is confirmed. Log in.');
      navigate(`/login?email=${encodeURIComponent(email.trim())}`);
    } catch (err) {
      const apiErr = asApiError(err);
      setError(apiErr);
      setErrors(v.collect({ email: apiErr.fieldError('email'), code: apiErr.fieldError('code') }));
    } finally {
      setBusy(false);
    }
  };

  const resend = async () => {
    const found = v.collect({ email: v.email(email) });
    setErrors(found);
    setError(null);
    setNotice('');
    if (v.hasErrors(found)) return;
    setBusy(true);
    try {
      await call(() => client.POST('/v1/auth:resendConfirmationCode', { body: { email: email.trim() } }), {
        auth: false,
      });
      setNotice('If the account waits for confirmation, a new code is on its way.');
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <Page title="Confirm your email">
      <Notice>{notice}</Notice>
      <p className="hint">
        On a local platform (<code>cloudsec up</code>) the code is written to its log, as{' '}
        <code>confirmation code … code=NNNNNN</code>.
      </p>
      <form onSubmit={submit} noValidate className="form">
        <ErrorBox error={error} />
        <TextField
          label="Email"
          type="email"
          autoComplete="email"
          value={email}
          onChange={(e) => setEmail(e.target.value)}
          error={errors.email}
        />
        <TextField
          label="Confirmation code"
          hint="Six digits"
          inputMode="numeric"
          autoComplete="one-time-code"
          value={codeValue}
          onChange={(e) => setCode(e.target.value)}
          error={errors.code}
        />
        <div className="actions">
          <button type="submit" disabled={busy}>
            Confirm
          </button>
          <button type="button" className="secondary" onClick={resend} disabled={busy}>
            Send a new code
          </button>
        </div>
      </form>
      <p>
        <Link to="/login">Back to log in</Link>
      </p>
    </Page>
  );
}
