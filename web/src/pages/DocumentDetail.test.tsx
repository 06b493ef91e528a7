import { cleanup, render, screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startSession, endSession } from '../api/client';
import { apiError, fakeGateway, json, tokens } from '../test/http';
import { DocumentDetail } from './DocumentDetail';

const ID = '11111111-2222-3333-4444-555555555555';
const HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=1</script>';

function doc(over: Record<string, unknown> = {}) {
  return {
    id: ID,
    tenant: 'acme',
    owner: 'u1',
    title: 'Plan',
    classification: 'INTERNAL',
    labels: { team: 'ops' },
    content: 'step one',
    contentType: 'text/plain',
    etag: 'e1',
    sizeBytes: '8',
    createTime: '2026-01-01T00:00:00Z',
    updateTime: '2026-01-01T00:00:00Z',
    ...over,
  };
}

beforeEach(() => startSession(tokens()));
afterEach(() => {
  cleanup();
  endSession();
});

describe('DocumentDetail', () => {
  it('renders HTML and script in a title, label and content as text', async () => {
    fakeGateway({
      [`GET /v1/documents/${ID}`]: () =>
        json(doc({ title: HOSTILE, labels: { x: HOSTILE }, content: HOSTILE })),
    });
    const { container } = render(<DocumentDetail id={ID} />);
    expect(await screen.findByRole('heading', { level: 1, name: HOSTILE })).toBeTruthy();
    expect(screen.getByTestId('document-content').textContent).toBe(HOSTILE);
    expect(container.querySelector('script')).toBeNull();
    expect(container.querySelector('img')).toBeNull();
    expect((window as unknown as { pwned?: number }).pwned).toBeUndefined();
  });

  it('sends the etag and the mask of what changed, and shows both versions on a conflict', async () => {
    const user = userEvent.setup();
    const latest = doc({ content: 'changed behind your back', etag: 'e2', updateTime: '2026-01-02T00:00:00Z' });
    const { calls } = fakeGateway({
      [`GET /v1/documents/${ID}`]: [() => json(doc()), () => json(latest)],
      [`PATCH /v1/documents/${ID}`]: [
        () => apiError(409, 10, 'the document changed: etag does not match', [], 'req-conflict'),
        () => json({ ...latest, title: 'Plan v2', etag: 'e3' }),
      ],
    });
    render(<DocumentDetail id={ID} />);
    await user.click(await screen.findByRole('button', { name: 'Edit' }));
    const title = screen.getByLabelText('Title');
    await user.clear(title);
    await user.type(title, 'Plan v2');
    await user.click(screen.getByRole('button', { name: 'Save changes' }));

    const panel = await screen.findByTestId('conflict');
    expect(within(panel).getByTestId('mine-title').textContent).toBe('Plan v2');
    expect(within(panel).getByTestId('latest-title').textContent).toBe('Plan');
    expect(within(panel).getByTestId('latest-content').textContent).toBe('changed behind your back');
    // What this person did not change shows the latest value on both sides.
    expect(within(panel).getByTestId('mine-content').textContent).toBe('changed behind your back');

    const firstPatch = calls.find((c) => c.method === 'PATCH')!;
    expect(firstPatch.search).toBe('?updateMask=title');
    expect(firstPatch.body).toEqual({ title: 'Plan v2', classification: 'INTERNAL', etag: 'e1' });

    await user.click(within(panel).getByRole('button', { name: 'Save my changes on the latest version' }));
    await screen.findByText('Saved your changes on top of the latest version.');
    const patches = calls.filter((c) => c.method === 'PATCH');
    expect(patches[1]!.body).toEqual({ title: 'Plan v2', classification: 'INTERNAL', etag: 'e2' });
    expect(screen.getByRole('heading', { level: 1 }).textContent).toBe('Plan v2');
  });

  it('shows a failure in words with the request id', async () => {
    fakeGateway({
      [`GET /v1/documents/${ID}`]: () => apiError(404, 5, 'document not found', [], 'req-404'),
    });
    render(<DocumentDetail id={ID} />);
    const alert = await screen.findByRole('alert');
    expect(alert.textContent).toContain('It was not found');
    expect(alert.textContent).toContain('document not found');
    expect(within(alert).getByTestId('request-id').textContent).toBe('req-404');
    expect(alert.textContent).toContain('HTTP 404 · NOT_FOUND');
  });

  it('names an empty and an oversized title before sending', async () => {
    const user = userEvent.setup();
    const { calls } = fakeGateway({ [`GET /v1/documents/${ID}`]: () => json(doc()) });
    render(<DocumentDetail id={ID} />);
    await user.click(await screen.findByRole('button', { name: 'Edit' }));
    const title = screen.getByLabelText('Title');
    await user.clear(title);
    await user.click(screen.getByRole('button', { name: 'Save changes' }));
    expect(await screen.findByText('Title is required.')).toBeTruthy();
    expect(title.getAttribute('aria-invalid')).toBe('true');
    await user.click(title);
    await user.paste('x'.repeat(201));
    await user.click(screen.getByRole('button', { name: 'Save changes' }));
    expect(await screen.findByText('Title must be at most 200 characters (it has 201).')).toBeTruthy();
    expect(calls.filter((c) => c.method === 'PATCH')).toHaveLength(0);
  });
});
