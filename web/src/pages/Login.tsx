import { useState, type FormEvent } from 'react';
import { call, client, startSession, takeEndNotice } from '../api/client';
import { asApiError, type ApiError } from '../api/errors';
import type { LoginResponse } from '../api/types';
import { ErrorBox, Notice } from '../components/ErrorBox';
import { TextField } from '../components/Field';
import { MfaEnrol } from '../components/MfaEnrol';
import { Page } from '../components/Page';
import { takeFlash } from '../lib/flash';
import { useTake } from '../lib/useTake';
import * as v from '../lib/validate';
import { Link, navigate, useLocation } from '../router';

type Step = { kind: 'password' } | { kind: 'mfa'; session: string } | { kind: 'setup'; session: string };

/** Only paths of this console, never another origin. */
function safeNext(next: string | null): string {
  return next && next.startsWith('/') && !next.startsWith('//') ? next : '/documents';
}

export function Login() {
  const { query } = useLocation();
  const notice = useTake(() => takeFlash() || takeEndNotice());
  const [email, setEmail] = useState(query.get('email') ?? '');
  const [password, setPassword] = useState('');
  const [mfaCode, setMfaCode] = useState('');
  const [step, setStep] = useState<Step>({ kind: 'password' });
  const [errors, setErrors] = useState<v.Errors>({});
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const next = safeNext(query.get('next'));

  const finish = (tokens: LoginResponse) => {
    startSession(tokens, email.trim());
    navigate(next, { replace: true });
  };

  const submitPassword = async (e: FormEvent) => {
    e.preventDefault();
    const found = v.collect({ email: v.email(email), password: v.password(password) });
    setErrors(found);
    setError(null);
    if (v.hasErrors(found)) return;
    setBusy(true);
    try {
      const data = await call(
        () => client.POST('/v1/auth:login', { body: { email: email.trim(), password } }),
        { auth: false },
      );
      setPassword('');
      if (data.challengeName === 'SOFTWARE_TOKEN_MFA' && data.session) {
        setStep({ kind: 'mfa', session: data.session });
      } else if (data.challengeName === 'MFA_SETUP' && data.session) {
        setStep({ kind: 'setup', session: data.session });
      } else {
        finish(data);
      }
    } catch (err) {
      const apiErr = asApiError(err);
      setError(apiErr);
      setErrors(v.collect({ email: apiErr.fieldError('email'), password: apiErr.fieldError('password') }));
    } finally {
      setBusy(false);
    }
  };

  const submitCode = async (e: FormEvent) => {
    e.preventDefault();
    if (step.kind !== 'mfa') return;
    const found = v.collect({ code: v.code(mfaCode, 'The code') });
    setErrors(found);
    setError(null);
    if (v.hasErrors(found)) return;
    setBusy(true);
    try {
      const data = await call(
        () =>
          client.POST('/v1/auth:respondToAuthChallenge', {
            body: { session: step.session, code: mfaCode.trim() },
          }),
        { auth: false },
      );
      finish(data);
    } catch (err) {
      const apiErr = asApiError(err);
      setError(apiErr);
      setErrors(v.collect({ code: apiErr.fieldError('code') }));
      if (apiErr.status === 401) {
        // The challenge expired or was used up: start again with the password.
        setStep({ kind: 'password' });
      }
    } finally {
      setBusy(false);
      setMfaCode('');
    }
  };

  if (step.kind === 'setup') {
    return (
      <Page title="Set up two-step login">
        <p>Your organisation requires an authenticator app. Set one up to finish logging in.</p>
        <MfaEnrol
          session={step.session}
          onDone={({ login }) => {
            if (login) finish(login);
            else setStep({ kind: 'password' });
          }}
        />
      </Page>
    );
  }

  if (step.kind === 'mfa') {
    return (
      <Page title="Two-step login">
        <form onSubmit={submitCode} noValidate className="form">
          <ErrorBox error={error} />
          <TextField
            label="Authentication code"
            hint="The six digits your authenticator app shows now, or one of your recovery codes (xxxxx-xxxxx)."
            autoComplete="one-time-code"
            autoFocus
            value={mfaCode}
            onChange={(e) => setMfaCode(e.target.value)}
            error={errors.code}
          />
          <div className="actions">
            <button type="submit" disabled={busy}>
              Verify
            </button>
            <button type="button" className="secondary" onClick={() => setStep({ kind: 'password' })}>
              Start again
            </button>
          </div>
        </form>
      </Page>
    );
  }

  return (
    <Page title="Log in">
      <Notice>{notice}</Notice>
      <form onSubmit={submitPassword} noValidate className="form">
        <ErrorBox error={error} title={error?.status === 401 ? 'Login refused.' : undefined} />
        <TextField
          label="Email"
          type="email"
          autoComplete="username"
          value={email}
          onChange={(e) => setEmail(e.target.value)}
          error={errors.email}
        />
        <TextField
          label="Password"
          type="password"
          autoComplete="current-password"
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          error={errors.password}
        />
        <div className="actions">
          <button type="submit" disabled={busy}>
            Log in
          </button>
        </div>
      </form>
      <ul className="links">
        <li>
          <Link to="/signup">Create an account (a new tenant)</Link>
        </li>
        <li>
          <Link to={`/confirm${email ? `?email=${encodeURIComponent(email.trim())}` : ''}`}>Confirm your email</Link>
        </li>
        <li>
          <Link to="/forgot">Forgot your password?</Link>
        </li>
      </ul>
    </Page>
  );
}
