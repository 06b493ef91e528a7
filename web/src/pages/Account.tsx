import { useState, type FormEvent } from 'react';
import { call, client, endSession } from '../api/client';
import { asApiError, type ApiError } from '../api/errors';
import { ErrorBox, Notice } from '../components/ErrorBox';
import { TextField } from '../components/Field';
import { MfaEnrol } from '../components/MfaEnrol';
import { Page } from '../components/Page';
import { flash } from '../lib/flash';
import * as v from '../lib/validate';
import { navigate } from '../router';
import { useSession } from '../session';

export function Account() {
  const session = useSession();
  return (
    <Page title="Your account">
      {session && (
        <dl className="facts">
          <dt>Email</dt>
          <dd>{session.email || '(not in the token)'}</dd>
          <dt>Organisation</dt>
          <dd>{session.claims.tenant}</dd>
          <dt>User id</dt>
          <dd>
            <code>{session.claims.sub}</code>
          </dd>
          <dt>Permissions</dt>
          <dd>{session.claims.scopes.join(', ') || 'none'}</dd>
          <dt>Groups</dt>
          <dd>{session.claims.groups.join(', ') || 'none'}</dd>
        </dl>
      )}
      <ChangePassword />
      <TwoStep />
      <SignOutEverywhere />
    </Page>
  );
}

function ChangePassword() {
  const [previous, setPrevious] = useState('');
  const [proposed, setProposed] = useState('');
  const [repeat, setRepeat] = useState('');
  const [errors, setErrors] = useState<v.Errors>({});
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const found = v.collect({
      previous: v.password(previous, 'Current password'),
      proposed: v.password(proposed, 'New password'),
      repeat: repeat === proposed ? undefined : 'The two new passwords differ.',
    });
    setErrors(found);
    setError(null);
    if (v.hasErrors(found)) return;
    setBusy(true);
    try {
      await call(() =>
        client.POST('/v1/auth:changePassword', {
          body: { previousPassword: previous, proposedPassword: proposed },
        }),
      );
      // A new password ends every login of the user, this one included.
      endSession();
      flash('Your password is changed and your logins have ended. Log in with the new password.');
      navigate('/login', { replace: true });
    } catch (err) {
      const apiErr = asApiError(err);
      setError(apiErr);
      setErrors(
        v.collect({
          previous: apiErr.fieldError('previousPassword'),
          proposed: apiErr.fieldError('proposedPassword'),
        }),
      );
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="change-password">
      <h2 id="change-password">Change your password</h2>
      <form onSubmit={submit} noValidate className="form">
        <ErrorBox error={error} />
        <TextField
          label="Current password"
          type="password"
          autoComplete="current-password"
          value={previous}
          onChange={(e) => setPrevious(e.target.value)}
          error={errors.previous}
        />
        <TextField
          label="New password"
          type="password"
          autoComplete="new-password"
          value={proposed}
          onChange={(e) => setProposed(e.target.value)}
          error={errors.proposed}
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
            Change password
          </button>
        </div>
      </form>
    </section>
  );
}

function TwoStep() {
  const [round, setRound] = useState(0);
  const [notice, setNotice] = useState('');
  const [removeCode, setRemoveCode] = useState('');
  const [removeError, setRemoveError] = useState<string>();
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  const remove = async (e: FormEvent) => {
    e.preventDefault();
    const problem = v.code(removeCode, 'The code');
    setRemoveError(problem);
    setError(null);
    setNotice('');
    if (problem) return;
    setBusy(true);
    try {
      await call(() => client.POST('/v1/auth:deleteSoftwareToken', { body: { code: removeCode.trim() } }));
      setNotice('The authenticator is removed; logins no longer ask for a code.');
      setRemoveCode('');
    } catch (err) {
      const apiErr = asApiError(err);
      setError(apiErr);
      setRemoveError(apiErr.fieldError('code'));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="two-step">
      <h2 id="two-step">Two-step login</h2>
      <Notice>{notice}</Notice>
      <p>An authenticator app (TOTP) adds a code to every login. Setting one up replaces any earlier one.</p>
      <MfaEnrol
        key={round}
        onDone={() => {
          setRound(round + 1);
          setNotice('Two-step login is on: the next login asks for a code from your app.');
        }}
      />
      <form onSubmit={remove} noValidate className="form">
        <h3>Remove the authenticator</h3>
        <ErrorBox error={error} />
        <TextField
          label="A current code or an unused recovery code"
          autoComplete="one-time-code"
          value={removeCode}
          onChange={(e) => setRemoveCode(e.target.value)}
          error={removeError}
        />
        <div className="actions">
          <button type="submit" className="secondary" disabled={busy}>
            Remove authenticator
          </button>
        </div>
      </form>
    </section>
  );
}

function SignOutEverywhere() {
  const [error, setError] = useState<ApiError | null>(null);
  const run = async () => {
    setError(null);
    try {
      await call(() => client.POST('/v1/auth:globalSignOut', { body: {} }));
      endSession();
      flash('You are signed out on every device.');
      navigate('/login', { replace: true });
    } catch (err) {
      setError(asApiError(err));
    }
  };
  return (
    <section aria-labelledby="sign-out-all">
      <h2 id="sign-out-all">Sign out everywhere</h2>
      <p>Ends every login of your account, on every device, including this one.</p>
      <ErrorBox error={error} />
      <button type="button" className="secondary" onClick={run}>
        Sign out everywhere
      </button>
    </section>
  );
}
