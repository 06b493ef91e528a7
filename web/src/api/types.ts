// Names for the generated schema's types that the pages use.
import type { components } from './schema';

type S = components['schemas'];

export type Document = S['cloudsec.documents.v1.Document'];
export type Classification = NonNullable<Document['classification']>;
export type AuditRecord = S['cloudsec.audit.v1.AuditRecord'];
export type VerifyResult = S['cloudsec.audit.v1.VerifyAuditChainResponse'];
export type Group = S['cloudsec.auth.v1.Group'];
export type LoginResponse = S['cloudsec.auth.v1.LoginResponse'];
export type MfaMode = NonNullable<S['cloudsec.auth.v1.SetTenantMfaModeRequest']['mode']>;

/** A string field of a response, whatever the generated type says (the contract types some as unknown). */
export function text(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

export const CLASSIFICATIONS = ['PUBLIC', 'INTERNAL', 'CONFIDENTIAL', 'RESTRICTED'] as const satisfies readonly Classification[];
export const MFA_MODES = ['OFF', 'OPTIONAL', 'REQUIRED'] as const satisfies readonly MfaMode[];
