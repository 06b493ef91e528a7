import { useState, type FormEvent } from 'react';
import { call, client } from '../api/client';
import { asApiError, type ApiError } from '../api/errors';
import type { LoginResponse } from '../api/types';
import { utf8ToBase64 } from '../lib/base64';
import { code as checkCode } from '../lib/validate';
import { ErrorBox } from './ErrorBox';
import { TextField } from './Field';

interface Secret {
  secretCode: string;
  otpauthUri: string;
  qrCodeSvg: string;
}

/**
 * TOTP enrolment: asks the API for a secret, shows its QR code (an SVG
 * image from the API, as a data: URL) and the secret in text, checks the
 * first code, then shows the recovery codes once.
 * With `session` (an MFA_SETUP challenge) it completes that login.
 */
export function MfaEnrol({
  session,
  onDone,
}: {
  session?: string;
  onDone: (result: { login?: LoginResponse | undefined }) => void;
}) {
  const [secret, setSecret] = useState<Secret | null>(null);
  const [codeValue, setCode] = useState('');
  const [codeError, setCodeError] = useState<string>();
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);
  const [recovery, setRecovery] = useState<{ codes: string[]; login?: LoginResponse | undefined } | null>(null);

  const start = async () => {
    setBusy(true);
    setError(null);
    try {
      const data = await call(
        () => client.POST('/v1/auth:associateSoftwareToken', { body: session ? { session } : {} }),
        { auth: !session },
      );
      setSecret({
        secretCode: data.secretCode ?? '',
        otpauthUri: data.otpauthUri ?? '',
        qrCodeSvg: data.qrCodeSvg ?? '',
      });
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setBusy(false);
    }
  };

  const verify = async (e: FormEvent) => {
    e.preventDefault();
    const problem = checkCode(codeValue, 'The code');
    setCodeError(problem);
    if (problem) return;
    setBusy(true);
    setError(null);
    try {
      const data = await call(
        () =>
          client.POST('/v1/auth:verifySoftwareToken', {
            body: session ? { session, code: codeValue.trim() } : { code: codeValue.trim() },
          }),
        { auth: !session },
      );
      setRecovery({ codes: data.recoveryCodes ?? [], login: data.login });
    } catch (e) {
      const err = asApiError(e);
      setError(err);
      setCodeError(err.fieldError('code'));
    } finally {
      setBusy(false);
    }
  };

  if (recovery) {
    return (
      <div className="panel" data-testid="recovery-codes">
        <h2>Your recovery codes</h2>
        <p>
          The authenticator is set up. Keep these ten codes somewhere safe: each one logs you in once if you lose the
          authenticator. They are shown only now.
        </p>
        <ul className="recovery-codes">
          {recovery.codes.map((c) => (
            <li key={c}>
              <code>{c}</code>
            </li>
          ))}
        </ul>
        <button type="button" onClick={() => onDone({ login: recovery.login })}>
          I have saved my recovery codes
        </button>
      </div>
    );
  }

  if (!secret) {
    return (
      <div>
        <ErrorBox error={error} />
        <button type="button" onClick={start} disabled={busy}>
          Set up an authenticator app
        </button>
      </div>
    );
  }

  return (
    <div className="panel mfa-enrol">
      <h2>Scan the code with your authenticator app</h2>
      <div className="mfa-grid">
        <img
          className="qr"
          src={`data:image/svg+xml;base64,${utf8ToBase64(secret.qrCodeSvg)}`}
          alt="QR code of the authenticator secret; the same secret is written out beside it"
          width={200}
          height={200}
        />
        <div>
          <p>Or type this secret into the app:</p>
          <p>
            <code className="secret" data-testid="totp-secret">
              {secret.secretCode}
            </code>
          </p>
        </div>
      </div>
      <form onSubmit={verify} noValidate>
        <ErrorBox error={error} />
        <TextField
          label="Code from the app"
          hint="Six digits"
          inputMode="numeric"
          autoComplete="one-time-code"
          value={codeValue}
          onChange={(e) => setCode(e.target.value)}
          error={codeError}
        />
        <button type="submit" disabled={busy}>
          Verify and turn on
        </button>
      </form>
    </div>
  );
}
