import { useState } from 'react';

/** Reads a one-shot value (a flash message) once per mounted page. */
export function useTake(take: () => string): string {
  const [value] = useState(take);
  return value;
}
