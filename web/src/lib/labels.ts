// Document labels as the person types them: one "key=value" per line.

export const LABEL_KEY = /^[a-z0-9_-]{1,63}$/;
export const MAX_LABELS = 32;

export function formatLabels(labels: Record<string, string> | null | undefined): string {
  return Object.entries(labels ?? {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`)
    .join('\n');
}

/** Parses the text into labels, or returns the first problem in words. */
export function parseLabels(text: string): { labels: Record<string, string> } | { error: string } {
  const labels: Record<string, string> = {};
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  for (const [i, line] of lines.entries()) {
    const eq = line.indexOf('=');
    const key = (eq < 0 ? line : line.slice(0, eq)).trim();
    const value = eq < 0 ? '' : line.slice(eq + 1).trim();
    if (!LABEL_KEY.test(key)) {
      return {
        error: `Label ${i + 1} ("${key}"): keys are 1 to 63 lowercase letters, digits, "_" or "-".`,
      };
    }
    if ([...value].length > 63) return { error: `Label "${key}": values are at most 63 characters.` };
    if (key in labels) return { error: `Label "${key}" appears twice.` };
    labels[key] = value;
  }
  if (Object.keys(labels).length > MAX_LABELS) return { error: `At most ${MAX_LABELS} labels.` };
  return { labels };
}

export function sameLabels(
  a: Record<string, string> | null | undefined,
  b: Record<string, string> | null | undefined,
): boolean {
  return formatLabels(a) === formatLabels(b);
}
