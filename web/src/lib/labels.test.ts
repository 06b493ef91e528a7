import { describe, expect, it } from 'vitest';
import { formatLabels, parseLabels } from './labels';

describe('labels', () => {
  it('round-trips key=value lines, sorted', () => {
    const parsed = parseLabels('team=ops\n\n  env = prod \nflag');
    expect(parsed).toEqual({ labels: { team: 'ops', env: 'prod', flag: '' } });
    expect(formatLabels({ team: 'ops', env: 'prod' })).toBe('env=prod\nteam=ops');
  });

  it('names a bad key, a long value and a duplicate', () => {
    expect(parseLabels('Team=ops')).toEqual({ error: expect.stringContaining('"Team"') });
    expect(parseLabels(`k=${'v'.repeat(64)}`)).toEqual({ error: expect.stringContaining('at most 63') });
    expect(parseLabels('a=1\na=2')).toEqual({ error: expect.stringContaining('twice') });
  });

  it('refuses more than 32 labels', () => {
    const text = Array.from({ length: 33 }, (_, i) => `k${i}=v`).join('\n');
    expect(parseLabels(text)).toEqual({ error: 'At most 32 labels.' });
  });
});
