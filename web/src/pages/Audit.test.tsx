import { cleanup, render, screen } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { endSession, startSession } from '../api/client';
import { apiError, fakeGateway, json, tokens } from '../test/http';
import { Audit } from './Audit';

const record = (seq: number, eventType: string) => ({
  tenant: 'acme',
  seq: String(seq),
  eventId: `e${seq}`,
  eventType: `cloudsec.events.v1.${eventType}`,
  source: '/cloudsec/documents',
  subject: 'd1',
  actor: 'u1',
  occurTime: '2026-01-01T00:00:00Z',
  recordTime: '2026-01-01T00:00:00Z',
  summary: { '@type': 'x', title: '<script>alert(1)</script>' },
  prevHash: '0'.repeat(64),
  hash: 'a'.repeat(64),
});

beforeEach(() => startSession(tokens()));
afterEach(() => {
  cleanup();
  endSession();
});

describe('Audit', () => {
  it('shows the verified chain and the records', async () => {
    fakeGateway({
      'GET /v1/audit/chain:verify': () =>
        json({ ok: true, recordsChecked: '2', firstInvalidSeq: '0', reason: '', headSeq: '2', headHash: 'b'.repeat(64) }),
      'GET /v1/audit/records': () => json({ records: [record(1, 'DocumentCreated'), record(2, 'DocumentDeleted')] }),
    });
    const { container } = render(<Audit />);
    expect((await screen.findByTestId('chain-status')).textContent).toMatch(/^Chain verified\. 2 records checked; the head is record 2/);
    expect(await screen.findByText('DocumentDeleted')).toBeTruthy();
    expect(container.querySelector('script')).toBeNull();
  });

  it('says where a broken chain breaks', async () => {
    fakeGateway({
      'GET /v1/audit/chain:verify': () =>
        json({ ok: false, recordsChecked: '3', firstInvalidSeq: '3', reason: 'hash mismatch', headSeq: '4' }),
      'GET /v1/audit/records': () => json({ records: [] }),
    });
    render(<Audit />);
    expect((await screen.findByTestId('chain-status')).textContent).toBe(
      'The chain is broken at record 3: hash mismatch',
    );
  });

  it('shows a refusal in words', async () => {
    fakeGateway({
      'GET /v1/audit/chain:verify': () => apiError(403, 7, 'the audit log needs tenant:admin', [], 'req-403'),
      'GET /v1/audit/records': () => apiError(403, 7, 'the audit log needs tenant:admin', [], 'req-403b'),
    });
    render(<Audit />);
    const alerts = await screen.findAllByRole('alert');
    expect(alerts[0]!.textContent).toContain('You are not allowed to do this.');
    expect(alerts.map((a) => a.textContent).join(' ')).toContain('req-403');
  });
});
