// A fake gateway for component tests: routes "METHOD /path" to handlers.
import { vi } from 'vitest';

export type Handler = (req: Request, url: URL) => Response | Promise<Response>;

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

export function apiError(
  status: number,
  code: number,
  message: string,
  details: unknown[] = [],
  requestId = 'req-test-1',
  headers: Record<string, string> = {},
): Response {
  return json({ code, message, details }, status, { 'x-request-id': requestId, ...headers });
}

export interface Recorded {
  method: string;
  path: string;
  search: string;
  headers: Headers;
  body: unknown;
}

export function fakeGateway(routes: Record<string, Handler | Handler[]>) {
  const calls: Recorded[] = [];
  const counters = new Map<string, number>();
  const fetchMock = vi.fn(async (input: RequestInfo | URL) => {
    const req = input instanceof Request ? input : new Request(input);
    const url = new URL(req.url);
    const text = await req.clone().text();
    calls.push({
      method: req.method,
      path: url.pathname,
      search: url.search,
      headers: req.headers,
      body: text ? JSON.parse(text) : undefined,
    });
    const key = `${req.method} ${decodeURIComponent(url.pathname)}`;
    const route = routes[key];
    if (!route) return apiError(404, 5, `no fake route for ${key}`);
    if (Array.isArray(route)) {
      const n = counters.get(key) ?? 0;
      counters.set(key, n + 1);
      return route[Math.min(n, route.length - 1)]!(req, url);
    }
    return route(req, url);
  });
  vi.stubGlobal('fetch', fetchMock);
  return { calls, fetchMock };
}

/** An unsigned JWT with these claims (the page reads tokens, never verifies them). */
export function fakeJwt(claims: Record<string, unknown>): string {
  const b64 = (o: unknown) =>
    btoa(JSON.stringify(o)).replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
  return `${b64({ alg: 'none' })}.${b64(claims)}.sig`;
}

export function tokens(claims: Record<string, unknown> = {}) {
  return {
    accessToken: fakeJwt({
      sub: '00000000-0000-0000-0000-000000000001',
      tenant: 'acme',
      scope: 'documents tenant:admin',
      exp: Math.floor(Date.now() / 1000) + 900,
      ...claims,
    }),
    tokenType: 'Bearer',
    expiresIn: 900,
    refreshToken: 'r'.repeat(43),
    idToken: fakeJwt({ email: 'ada@example.com' }),
  };
}
