// The signed-in user's tokens, kept in this module's memory only: never in
// localStorage, sessionStorage or a cookie. A reload or a new tab therefore
// starts signed out; the refresh token renews the access token while the
// page lives (see api/client.ts).
import { useSyncExternalStore } from 'react';

export interface Claims {
  sub: string;
  tenant: string;
  scopes: string[];
  groups: string[];
  exp: number;
}

export interface Session {
  accessToken: string;
  refreshToken: string;
  /** Epoch milliseconds when the access token expires. */
  expiresAt: number;
  claims: Claims;
  email: string;
}

export interface Tokens {
  accessToken?: string;
  refreshToken?: string;
  expiresIn?: number;
  idToken?: string;
}

let current: Session | null = null;
const listeners = new Set<() => void>();

function emit() {
  for (const l of listeners) l();
}

export function getSession(): Session | null {
  return current;
}

export function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function useSession(): Session | null {
  return useSyncExternalStore(subscribe, getSession, getSession);
}

/** The payload of a JWT, without verifying it: the services verify tokens, the page only reads them. */
export function decodeJwt(token: string): Record<string, unknown> {
  const part = token.split('.')[1];
  if (!part) return {};
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const value: unknown = JSON.parse(new TextDecoder().decode(bytes));
    return value && typeof value === 'object' ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

export function claimsOf(accessToken: string): Claims {
  const p = decodeJwt(accessToken);
  const groups = p['cognito:groups'] ?? p['groups'];
  return {
    sub: typeof p.sub === 'string' ? p.sub : '',
    tenant: typeof p.tenant === 'string' ? p.tenant : '',
    scopes: typeof p.scope === 'string' ? p.scope.split(' ').filter(Boolean) : [],
    groups: Array.isArray(groups) ? groups.filter((g): g is string => typeof g === 'string') : [],
    exp: typeof p.exp === 'number' ? p.exp : 0,
  };
}

/** Starts or renews the session from a Login/Refresh answer. */
export function setTokens(tokens: Tokens, email?: string): Session {
  if (!tokens.accessToken || !tokens.refreshToken) {
    throw new Error('the server answered without tokens');
  }
  const idEmail = tokens.idToken ? decodeJwt(tokens.idToken).email : undefined;
  current = {
    accessToken: tokens.accessToken,
    refreshToken: tokens.refreshToken,
    expiresAt: Date.now() + (tokens.expiresIn ?? 300) * 1000,
    claims: claimsOf(tokens.accessToken),
    email: (typeof idEmail === 'string' && idEmail) || email || current?.email || '',
  };
  emit();
  return current;
}

export function clearSession(): void {
  current = null;
  emit();
}

export function isAdmin(s: Session | null): boolean {
  return !!s && s.claims.scopes.includes('tenant:admin');
}

export function canReadAudit(s: Session | null): boolean {
  return !!s && (s.claims.scopes.includes('tenant:admin') || s.claims.scopes.includes('audit:read'));
}

/** Who may see and make RESTRICTED documents: tenant admins and the `restricted` group (the default `documents.restricted_group`). */
export function canUseRestricted(s: Session | null): boolean {
  return !!s && (isAdmin(s) || s.claims.groups.includes('restricted'));
}
