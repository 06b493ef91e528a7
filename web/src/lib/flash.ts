// A message for the next page (e.g. "Your email is confirmed. Log in."),
// kept in memory until that page takes it.
let message = '';

export function flash(text: string): void {
  message = text;
}

export function takeFlash(): string {
  const m = message;
  message = '';
  return m;
}
