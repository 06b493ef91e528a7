// The typed REST client: openapi-fetch over the types generated from the
// gateway's OpenAPI document (schema.ts, `npm run gen:api`).
//
// Every call goes through `call()`, which
// - sends an X-Request-Id of its own, so that even a call that gets no
//   answer has an id to quote;
// - adds the in-memory access token;
// - on a 401, renews the access token once with the refresh token and
//   retries;
// - turns every failure into an ApiError that the pages show in words.
import createClient, { type Middleware } from 'openapi-fetch';
import type { paths } from './schema';
import { ApiError, errorFromResponse, networkError } from './errors';
import { clearSession, getSession, setTokens, type Tokens } from '../session';

// Same origin as the page (the gateway or CloudFront serves both). `fetch`
// is looked up at each call, so that tests can replace it.
export const client = createClient<paths>({
  baseUrl: typeof location !== 'undefined' ? location.origin : '',
  fetch: (request: Request) => globalThis.fetch(request),
});

const REQUEST_ID = 'x-request-id';

// Calls made with no session, or with a refresh token: no access token goes with them.
const NO_BEARER = new Set([
  '/v1/auth:signUp',
  '/v1/auth:confirmSignUp',
  '/v1/auth:resendConfirmationCode',
  '/v1/auth:forgotPassword',
  '/v1/auth:confirmForgotPassword',
  '/v1/auth:login',
  '/v1/auth:respondToAuthChallenge',
  '/v1/auth:refresh',
  '/v1/auth:logout',
]);

const middleware: Middleware = {
  onRequest({ request }) {
    if (!request.headers.has(REQUEST_ID)) request.headers.set(REQUEST_ID, newRequestId());
    const s = getSession();
    if (s && !request.headers.has('authorization') && !NO_BEARER.has(new URL(request.url).pathname)) {
      request.headers.set('authorization', `Bearer ${s.accessToken}`);
    }
    lastRequestId = request.headers.get(REQUEST_ID) ?? '';
    return request;
  },
};
client.use(middleware);

let lastRequestId = '';

export function newRequestId(): string {
  if (typeof crypto !== 'undefined' && 'randomUUID' in crypto) return `console-${crypto.randomUUID()}`;
  return `console-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

interface Outcome<D> {
  data?: D;
  error?: unknown;
  response: Response;
}

/**
 * Runs one API call and returns its data, or throws an ApiError.
 * `auth: false` for the calls made without a session (sign-up, login, ...).
 */
export async function call<D>(fn: () => Promise<Outcome<D>>, opts: { auth?: boolean } = {}): Promise<D> {
  const auth = opts.auth ?? true;
  let outcome = await attempt(fn);
  if (outcome.response.status === 401 && auth && getSession()) {
    if (await refresh()) outcome = await attempt(fn);
  }
  if (!outcome.response.ok || outcome.error !== undefined) {
    const err = errorFromResponse(outcome.response, outcome.error, lastRequestId);
    if (err.status === 401 && auth && getSession()) {
      // The refresh failed too: the login is over (signed out elsewhere,
      // disabled, or revoked).
      endSession('Your session has ended. Log in again.');
    }
    throw err;
  }
  return outcome.data as D;
}

async function attempt<D>(fn: () => Promise<Outcome<D>>): Promise<Outcome<D>> {
  try {
    return await fn();
  } catch (e) {
    throw networkError(e, lastRequestId);
  }
}

// ---- refresh ---------------------------------------------------------------

let inFlight: Promise<boolean> | null = null;
let timer: ReturnType<typeof setTimeout> | undefined;

/** Exchanges the refresh token for new tokens; one exchange at a time. */
export function refresh(): Promise<boolean> {
  if (!inFlight) {
    inFlight = doRefresh().finally(() => {
      inFlight = null;
    });
  }
  return inFlight;
}

async function doRefresh(): Promise<boolean> {
  const s = getSession();
  if (!s) return false;
  try {
    const { data, response } = await client.POST('/v1/auth:refresh', {
      body: { refreshToken: s.refreshToken },
    });
    if (!response.ok || !data) return false;
    startSession(data as Tokens, s.email);
    return true;
  } catch {
    return false;
  }
}

/** Keeps the session and renews its access token a minute before it expires. */
export function startSession(tokens: Tokens, email?: string): void {
  const s = setTokens(tokens, email);
  clearTimeout(timer);
  const wait = Math.max(5_000, s.expiresAt - Date.now() - 60_000);
  timer = setTimeout(() => {
    void refresh().then((ok) => {
      if (!ok) endSession('Your session has ended. Log in again.');
    });
  }, wait);
}

let endNotice = '';

/** Forgets the tokens; the notice is shown on the login page. */
export function endSession(notice = ''): void {
  clearTimeout(timer);
  endNotice = notice;
  clearSession();
}

export function takeEndNotice(): string {
  const n = endNotice;
  endNotice = '';
  return n;
}

/** Logs out: revokes the refresh token's login at the server, then forgets the tokens. */
export async function logout(): Promise<void> {
  const s = getSession();
  if (s) {
    try {
      await call(() => client.POST('/v1/auth:logout', { body: { refreshToken: s.refreshToken } }), { auth: false });
    } catch (e) {
      // The tokens are forgotten either way; the server-side login ends at
      // its expiry at the latest.
      if (!(e instanceof ApiError)) throw e;
    }
  }
  endSession('You are logged out.');
}
