import { cleanup, render, screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { endSession, startSession } from '../api/client';
import { apiError, fakeGateway, json, tokens } from '../test/http';
import { Admin } from './Admin';

const BOB = '22222222-2222-2222-2222-222222222222';

beforeEach(() => startSession(tokens()));
afterEach(() => {
  cleanup();
  endSession();
});

describe('Admin', () => {
  it('adds a user, then disables them and asks before deleting', async () => {
    const user = userEvent.setup();
    const { calls } = fakeGateway({
      'GET /v1/groups': () => json({ groups: [] }),
      'POST /v1/users': () => json({ userId: BOB, tenant: 'acme' }),
      [`POST /v1/users/${BOB}:disable`]: () => json({}),
      [`DELETE /v1/users/${BOB}`]: () => json({}),
    });
    render(<Admin />);
    await user.click(screen.getByRole('button', { name: 'Add user' }));
    expect(await screen.findByText('Email is required.')).toBeTruthy();
    await user.type(screen.getByLabelText('Email'), 'bob@example.com');
    await user.type(screen.getByLabelText('Initial password'), 'stapler quantum orchard lamp');
    await user.click(screen.getByRole('button', { name: 'Add user' }));
    const table = await screen.findByTestId('users-table');
    expect(await within(table).findByText('bob@example.com')).toBeTruthy();
    expect(calls.find((c) => c.path === '/v1/users')!.body).toEqual({
      email: 'bob@example.com',
      password: 'stapler quantum orchard lamp',
      tenantAdmin: false,
    });

    await user.click(screen.getByRole('button', { name: 'Disable bob@example.com' }));
    expect(await screen.findByText('bob@example.com: disabled.')).toBeTruthy();

    await user.click(screen.getByRole('button', { name: 'Delete bob@example.com' }));
    expect(calls.some((c) => c.method === 'DELETE')).toBe(false);
    await user.click(screen.getByRole('button', { name: 'Delete bob@example.com for good' }));
    expect(await screen.findByText('bob@example.com: deleted.')).toBeTruthy();
    expect(within(table).queryByText('bob@example.com')).toBeNull();
  });

  it('shows a refused action with its request id', async () => {
    const user = userEvent.setup();
    fakeGateway({
      'GET /v1/groups': () => json({ groups: [{ name: 'restricted', memberIds: [BOB], scopes: [] }] }),
      [`POST /v1/users/${BOB}:enable`]: () => apiError(404, 5, 'user not found', [], 'req-gone'),
    });
    render(<Admin />);
    await user.click(await screen.findByRole('button', { name: `Enable ${BOB}` }));
    const alert = await screen.findByRole('alert');
    expect(alert.textContent).toContain('user not found');
    expect(within(alert).getByTestId('request-id').textContent).toBe('req-gone');
  });
});
