// The checks the page makes before sending, so that an empty or oversized
// field is named at once; the server checks everything again and its field
// violations are shown the same way.

export type Errors = Record<string, string>;

export function required(value: string, what = 'This field'): string | undefined {
  return value.trim() === '' ? `${what} is required.` : undefined;
}

export function maxChars(value: string, max: number, what = 'This field'): string | undefined {
  const n = [...value].length;
  return n > max
    ? `${what} must be at most ${max.toLocaleString('en')} characters (it has ${n.toLocaleString('en')}).`
    : undefined;
}

export function maxBytes(value: string, max: number, what = 'This field'): string | undefined {
  const n = new TextEncoder().encode(value).length;
  return n > max
    ? `${what} must be at most ${max.toLocaleString('en')} bytes (it has ${n.toLocaleString('en')}).`
    : undefined;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1).replace(/\.0$/, '')} KiB`;
  return `${(n / 1024 / 1024).toFixed(2).replace(/\.?0+$/, '')} MiB`;
}

export function email(value: string): string | undefined {
  return (
    required(value, 'Email') ??
    maxChars(value, 254, 'Email') ??
    (/^[^\s@]+@[^\s@]+$/.test(value.trim()) ? undefined : 'Email must look like name@example.com.')
  );
}

export function password(value: string, what = 'Password'): string | undefined {
  return required(value, what) ?? maxChars(value, 128, what);
}

export function code(value: string, what = 'Code'): string | undefined {
  return required(value, what) ?? maxChars(value, 64, what);
}

/** The first error of each field, without the fields that passed. */
export function collect(checks: Record<string, string | undefined>): Errors {
  const out: Errors = {};
  for (const [k, v] of Object.entries(checks)) if (v) out[k] = v;
  return out;
}

export function hasErrors(e: Errors): boolean {
  return Object.keys(e).length > 0;
}
