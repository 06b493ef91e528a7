import { afterEach, describe, expect, it } from 'vitest';
import { getSession } from '../session';
import { apiError, fakeGateway, json, tokens } from '../test/http';
import { call, client, endSession, logout, startSession, takeEndNotice } from './client';
import { ApiError } from './errors';

afterEach(() => endSession());

describe('call', () => {
  it('renews an expired access token once with the refresh token, then retries', async () => {
    startSession(tokens({ sub: 'old' }));
    const { calls } = fakeGateway({
      'GET /v1/groups': [() => apiError(401, 16, 'token expired'), () => json({ groups: [] })],
      'POST /v1/auth:refresh': () => json({ ...tokens({ sub: 'renewed' }), refreshToken: 's'.repeat(43) }),
    });
    const data = await call(() => client.GET('/v1/groups'));
    expect(data).toEqual({ groups: [] });
    expect(calls.map((c) => `${c.method} ${c.path}`)).toEqual([
      'GET /v1/groups',
      'POST /v1/auth:refresh',
      'GET /v1/groups',
    ]);
    expect(calls[1]!.body).toEqual({ refreshToken: 'r'.repeat(43) });
    expect(calls[2]!.headers.get('authorization')).toBe(`Bearer ${getSession()!.accessToken}`);
    expect(getSession()!.claims.sub).toBe('renewed');
    expect(getSession()!.refreshToken).toBe('s'.repeat(43));
  });

  it('ends the session when the refresh is refused too', async () => {
    startSession(tokens());
    fakeGateway({
      'GET /v1/groups': () => apiError(401, 16, 'token revoked'),
      'POST /v1/auth:refresh': () => apiError(401, 16, 'invalid refresh token'),
    });
    const err = await call(() => client.GET('/v1/groups')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(401);
    expect(getSession()).toBeNull();
    expect(takeEndNotice()).toBe('Your session has ended. Log in again.');
  });

  it('turns a network failure into an error with the request id it sent', async () => {
    fakeGateway({});
    globalThis.fetch = () => Promise.reject(new TypeError('Failed to fetch'));
    const err = (await call(() => client.GET('/v1/groups')).catch((e: unknown) => e)) as ApiError;
    expect(err.status).toBe(0);
    expect(err.requestId).toMatch(/^console-/);
  });

  it('logs out at the server and forgets the tokens', async () => {
    startSession(tokens());
    const { calls } = fakeGateway({ 'POST /v1/auth:logout': () => json({}) });
    await logout();
    expect(calls[0]!.body).toEqual({ refreshToken: 'r'.repeat(43) });
    expect(calls[0]!.headers.get('authorization')).toBeNull();
    expect(getSession()).toBeNull();
  });
});
