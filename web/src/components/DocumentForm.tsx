import { useState, type FormEvent } from 'react';
import type { ApiError } from '../api/errors';
import { CLASSIFICATIONS, text, type Classification, type Document } from '../api/types';
import { formatLabels, parseLabels } from '../lib/labels';
import * as v from '../lib/validate';
import { ErrorBox } from './ErrorBox';
import { SelectField, TextArea, TextField } from './Field';

export const MAX_TITLE = 200;
export const MAX_CONTENT_BYTES = 1024 * 1024;
export const MAX_CONTENT_CHARS = 262_144;

/** What the form edits, as the API spells it. */
export interface DocumentInput {
  title: string;
  classification: Classification;
  labels: Record<string, string>;
  content: string;
  contentType: string;
}

export function DocumentForm({
  initial,
  submitLabel,
  onSubmit,
  onCancel,
  busy,
  error,
  allowRestricted,
}: {
  initial?: Document | undefined;
  submitLabel: string;
  onSubmit: (input: DocumentInput) => void;
  onCancel?: () => void;
  busy: boolean;
  error: ApiError | null;
  allowRestricted: boolean;
}) {
  const [title, setTitle] = useState(initial?.title ?? '');
  const [classification, setClassification] = useState<string>(initial?.classification ?? '');
  const [labels, setLabels] = useState(formatLabels(initial?.labels));
  const [content, setContent] = useState(initial?.content ?? '');
  const [contentType, setContentType] = useState(text(initial?.contentType) || 'text/plain');
  const [errors, setErrors] = useState<v.Errors>({});

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const parsed = parseLabels(labels);
    const found = v.collect({
      title: v.required(title, 'Title') ?? v.maxChars(title, MAX_TITLE, 'Title'),
      classification: classification ? undefined : 'Choose a classification.',
      labels: 'error' in parsed ? parsed.error : undefined,
      content: v.maxChars(content, MAX_CONTENT_CHARS, 'Content') ?? v.maxBytes(content, MAX_CONTENT_BYTES, 'Content'),
      contentType: v.maxChars(contentType, 255, 'Content type'),
    });
    setErrors(found);
    if (v.hasErrors(found) || 'error' in parsed) return;
    onSubmit({
      title: title.trim(),
      classification: classification as Classification,
      labels: parsed.labels,
      content,
      contentType: contentType.trim() || 'text/plain',
    });
  };

  const fieldError = (name: string, apiName = name) => errors[name] ?? error?.fieldError(apiName);
  const options = CLASSIFICATIONS.filter(
    (c) => c !== 'RESTRICTED' || allowRestricted || initial?.classification === 'RESTRICTED',
  );

  return (
    <form onSubmit={submit} noValidate className="form" aria-label={submitLabel}>
      <ErrorBox error={error} />
      <TextField
        label="Title"
        hint={`1 to ${MAX_TITLE} characters.`}
        value={title}
        onChange={(e) => setTitle(e.target.value)}
        error={fieldError('title')}
      />
      <SelectField
        label="Classification"
        hint="Who may read it. Restricted documents are for administrators and the restricted group."
        value={classification}
        onChange={(e) => setClassification(e.target.value)}
        error={fieldError('classification')}
      >
        <option value="">Choose…</option>
        {options.map((c) => (
          <option key={c} value={c}>
            {c.charAt(0) + c.slice(1).toLowerCase()}
          </option>
        ))}
      </SelectField>
      <TextArea
        label="Labels"
        hint="One key=value per line; keys are lowercase letters, digits, _ and -."
        rows={3}
        value={labels}
        onChange={(e) => setLabels(e.target.value)}
        error={fieldError('labels')}
      />
      <TextField
        label="Content type"
        value={contentType}
        onChange={(e) => setContentType(e.target.value)}
        error={fieldError('contentType')}
      />
      <TextArea
        label="Content"
        hint="Text, at most 262,144 characters and 1 MiB."
        rows={10}
        value={content}
        onChange={(e) => setContent(e.target.value)}
        error={fieldError('content')}
      />
      <div className="actions">
        <button type="submit" disabled={busy}>
          {submitLabel}
        </button>
        {onCancel && (
          <button type="button" className="secondary" onClick={onCancel}>
            Cancel
          </button>
        )}
      </div>
    </form>
  );
}

/** The update mask (proto field names) of what differs from the version read. */
export function changedFields(before: Document, after: DocumentInput): string[] {
  const mask: string[] = [];
  if ((before.title ?? '') !== after.title) mask.push('title');
  if ((before.classification ?? '') !== after.classification) mask.push('classification');
  if (formatLabels(before.labels) !== formatLabels(after.labels)) mask.push('labels');
  if ((before.content ?? '') !== after.content) mask.push('content');
  if ((text(before.contentType) || 'text/plain') !== after.contentType) mask.push('content_type');
  return mask;
}

/**
 * The PATCH body: the fields the mask names, plus the title and
 * classification that the contract marks required on a Document. The
 * explicit `updateMask` decides what changes, so those two are ignored
 * unless the mask names them.
 */
export function patchBody(
  input: DocumentInput,
  mask: string[],
  etag: string,
): Partial<DocumentInput> & Pick<DocumentInput, 'title' | 'classification'> & { etag: string } {
  const body: Partial<DocumentInput> & Pick<DocumentInput, 'title' | 'classification'> & { etag: string } = {
    title: input.title,
    classification: input.classification,
    etag,
  };
  for (const path of mask) {
    if (path === 'labels') body.labels = input.labels;
    else if (path === 'content') body.content = input.content;
    else if (path === 'content_type') body.contentType = input.contentType;
  }
  return body;
}
