import { useState, type FormEvent } from 'react';
import { call, client } from '../api/client';
import { asApiError, type ApiError } from '../api/errors';
import { ErrorBox } from '../components/ErrorBox';
import { TextField } from '../components/Field';
import { Page } from '../components/Page';
import { flash } from '../lib/flash';
import * as v from '../lib/validate';
import { Link, navigate } from '../router';

export function SignUp() {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [tenant, setTenant] = useState('');
  const [errors, setErrors] = useState<v.Errors>({});
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const found = v.collect({
      email: v.email(email),
      password: v.password(password),
      tenant:
        v.required(tenant, 'Organisation name') ??
        v.maxChars(tenant, 63, 'Organisation name') ??
        (/^[a-z0-9-]+$/.test(tenant.trim())
          ? undefined
          : 'Organisation name: use lowercase letters, digits and dashes only.'),
    });
    setErrors(found);
    setError(null);
    if (v.hasErrors(found)) return;
    setBusy(true);
    try {
      await call(
        () =>
          client.POST('/v1/auth:signUp', {
            body: { email: email.trim(), password, tenant: tenant.trim() },
          }),
        { auth: false },
      );
      flash('Account created. Enter the code we sent to your email.');
      navigate(`/confirm?email=${encodeURIComponent(email.trim())}`);
    } catch (err) {
      const apiErr = asApiError(err);
      setError(apiErr);
      setErrors(
        v.collect({
          email: apiErr.fieldError('email'),
          password: apiErr.fieldError('password'),
          tenant: apiErr.fieldError('tenant'),
        }),
      );
    } finally {
      setBusy(false);
    }
  };

  return (
    <Page title="Create an account">
      <p>This creates a new organisation (tenant); you become its administrator.</p>
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
          label="Password"
          type="password"
          autoComplete="new-password"
          hint="At least 12 characters; not a common password and not your email."
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          error={errors.password}
        />
        <TextField
          label="Organisation name"
          hint="3 to 63 lowercase letters, digits and dashes, e.g. acme."
          autoComplete="organization"
          value={tenant}
          onChange={(e) => setTenant(e.target.value)}
          error={errors.tenant}
        />
        <div className="actions">
          <button type="submit" disabled={busy}>
            Create account
          </button>
        </div>
      </form>
      <p>
        Already have an account? <Link to="/login">Log in</Link>
      </p>
    </Page>
  );
}
