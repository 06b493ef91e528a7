import { cleanup, render, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it } from 'vitest';
import { endSession } from '../api/client';
import { getSession } from '../session';
import { apiError, fakeGateway, json, tokens } from '../test/http';
import { Login } from './Login';

afterEach(() => {
  cleanup();
  endSession();
  window.history.replaceState(null, '', '/');
});

async function fillAndSubmit(email: string, password: string) {
  const user = userEvent.setup();
  await user.type(screen.getByLabelText('Email'), email);
  await user.type(screen.getByLabelText('Password'), password);
  await user.click(screen.getByRole('button', { name: 'Log in' }));
  return user;
}

describe('Login', () => {
  it('names empty fields without calling the API', async () => {
    const { calls } = fakeGateway({});
    render(<Login />);
    await userEvent.setup().click(screen.getByRole('button', { name: 'Log in' }));
    expect(await screen.findByText('Email is required.')).toBeTruthy();
    expect(screen.getByText('Password is required.')).toBeTruthy();
    expect(calls).toHaveLength(0);
  });

  it('answers the TOTP challenge and keeps the tokens in memory only', async () => {
    const { calls } = fakeGateway({
      'POST /v1/auth:login': () => json({ challengeName: 'SOFTWARE_TOKEN_MFA', session: 's1' }),
      'POST /v1/auth:respondToAuthChallenge': [
        () =>
          apiError(400, 3, 'invalid code', [
            {
              '@type': 'type.googleapis.com/google.rpc.BadRequest',
              fieldViolations: [{ field: 'code', description: 'is wrong, expired or already used' }],
            },
          ], 'req-wrong-code'),
        () => json(tokens()),
      ],
    });
    render(<Login />);
    const user = await fillAndSubmit('ada@example.com', 'correct horse battery');
    const code = await screen.findByLabelText('Authentication code');
    await user.type(code, '000000');
    await user.click(screen.getByRole('button', { name: 'Verify' }));
    const alert = await screen.findByRole('alert');
    expect(alert.textContent).toContain('is wrong, expired or already used');
    expect(within(alert).getByTestId('request-id').textContent).toBe('req-wrong-code');

    await user.type(screen.getByLabelText('Authentication code'), '123456');
    await user.click(screen.getByRole('button', { name: 'Verify' }));
    await waitFor(() => expect(getSession()).not.toBeNull());
    expect(getSession()!.email).toBe('ada@example.com');
    expect(calls.map((c) => c.path)).toEqual([
      '/v1/auth:login',
      '/v1/auth:respondToAuthChallenge',
      '/v1/auth:respondToAuthChallenge',
    ]);
    expect(calls[2]!.body).toEqual({ session: 's1', code: '123456' });
    // Every call carries a request id of the console's own.
    expect(calls[0]!.headers.get('x-request-id')).toMatch(/^console-/);
    // Nothing about the login is stored anywhere but in memory.
    expect(window.localStorage.length).toBe(0);
    expect(window.sessionStorage.length).toBe(0);
    expect(document.cookie).toBe('');
  });

  it('shows a locked account with its retry time', async () => {
    fakeGateway({
      'POST /v1/auth:login': () =>
        apiError(429, 8, 'too many failed attempts, try again in 30 s', [
          { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '30s' },
        ], 'req-locked'),
    });
    render(<Login />);
    await fillAndSubmit('ada@example.com', 'wrong password here');
    const alert = await screen.findByRole('alert');
    expect(alert.textContent).toContain('Too many attempts.');
    expect(within(alert).getByTestId('retry-after').textContent).toMatch(/^Try again in 30 seconds \(after /);
    expect(alert.textContent).toContain('HTTP 429 · RESOURCE_EXHAUSTED');
  });
});
