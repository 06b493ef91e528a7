export function ClassificationBadge({ value }: { value: string | undefined }) {
  const v = value ?? 'CLASSIFICATION_UNSPECIFIED';
  return <span className={`badge badge-${v.toLowerCase()}`}>{v.charAt(0) + v.slice(1).toLowerCase()}</span>;
}

export function Labels({ labels }: { labels: Record<string, string> | null | undefined }) {
  const entries = Object.entries(labels ?? {}).sort(([a], [b]) => a.localeCompare(b));
  if (entries.length === 0) return <span className="muted">none</span>;
  return (
    <ul className="labels">
      {entries.map(([k, v]) => (
        <li key={k}>
          {k}
          {v ? `=${v}` : ''}
        </li>
      ))}
    </ul>
  );
}

export function formatTime(value: string | undefined): string {
  if (!value) return '';
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? value : d.toLocaleString();
}
