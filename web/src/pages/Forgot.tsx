import { useState, type FormEvent } from 'react';
import { call, client } from '../api/client';
import { asApiError, type ApiError } from '../api/errors';
import { ErrorBox, Notice } from '../components/ErrorBox';
import { TextField } from '../components/Field';
import { Page } from '../components/Page';
import { flash } from '../lib/flash';
import * as v from '../lib/validate';
import { Link, navigate } from '../router';

export function Forgot() {
  const [email, setEmail] = useState('');
  const [sent, setSent] = useState(false);
  const [codeValue, setCode] = useState('');
  const [password, setPassword] = useState('');
  const [repeat, setRepeat] = useState('');
  const [errors, setErrors] = useState<v.Errors>({});
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  const request = async (e: FormEvent) => {
    e.preventDefault();
    const found = v.collect({ email: v.email(email) });
    setErrors(found);
    setError(null);
    if (v.hasErrors(found)) return;
    setBusy(true);
    try {
      await call(() => client.POST('/v1/auth:forgotPassword', { body: { email: email.trim() } }), { auth: false });
      setSent(true);
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setBusy(false);
    }
  };

  const reset = async (e: FormEvent) => {
    e.preventDefault();
    const found = v.collect({
      code: v.code(codeValue, 'Reset code'),
      password: v.password(password, 'New password'),
      repeat: repeat === password ? undefined : 'The two passwords differ.',
    });
    setErrors(found);
    setError(null);
    if (v.hasErrors(found)) return;
    setBusy(true);
    try {
      await call(
        () =>
          client.POST('/v1/auth:confirmForgotPassword', {
            body: { email: email.trim(), code: codeValue.trim(), password },
          }),
        { auth: false },
      );
      flash('Your password is changed. Log in with the new one.');
      navigate(`/login?email=${encodeURIComponent(email.trim())}`);
    } catch (err) {
      const apiErr = asApiError(err);
      setError(apiErr);
      setErrors(v.collect({ code: apiErr.fieldError('code'), password: apiErr.fieldError('password') }));
    } finally {
      setBusy(false);
    }
  };

  return (
    <Page title="Reset your password">
      {!sent ? (
        <form onSubmit={request} noValidate className="form">
          <ErrorBox error={error} />
          <TextField
            label="Email"
            type="email"
            autoComplete="email"
            value={email}
            onChange={(e) => setEmail(e.target.value)}
            error={errors.email}
          />
          <div className="actions">
            <button type="submit" disabled={busy}>
              Send a reset code
            </button>
          </div>
        </form>
      ) : (
        <form onSubmit={reset} noValidate className="form">
          <Notice>If an account has this email, a reset code is on its way to it.</Notice>
          <ErrorBox error={error} />
          <TextField
            label="Reset code"
            inputMode="numeric"
            autoComplete="one-time-code"
            value={codeValue}
            onChange={(e) => setCode(e.target.value)}
            error={errors.code}
          />
          <TextField
            label="New password"
            type="password"
            autoComplete="new-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            error={errors.password}
          />
          <TextField
            label="New password again"
            type="password"
            autoComplete="new-password"
            value={repeat}
            onChange={(e) => setRepeat(e.target.value)}
            error={errors.repeat}
          />
          <div className="actions">
            <button type="submit" disabled={busy}>
              Set the new password
            </button>
          </div>
        </form>
      )}
      <p>
        <Link to="/login">Back to log in</Link>
      </p>
    </Page>
  );
}
