// RFC 6238 appendix B vectors (SHA-1, 8 digits there; the last 6 here).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { totpAt } from './totp.mjs';

test('matches the RFC 6238 SHA-1 vectors', () => {
  const secret = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ'; // "12345678901234567890"
  assert.equal(totpAt(secret, Math.floor(59 / 30)), '287082');
  assert.equal(totpAt(secret, Math.floor(1111111109 / 30)), '081804');
  assert.equal(totpAt(secret, Math.floor(1234567890 / 30)), '005924');
});
