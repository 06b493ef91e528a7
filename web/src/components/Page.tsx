import { useEffect, useRef, type ReactNode } from 'react';

/**
 * A page: sets the document title and moves focus to the heading when the
 * page changes, so that keyboard and screen-reader users land on it.
 */
export function Page({ title, children, wide }: { title: string; children: ReactNode; wide?: boolean }) {
  const h1 = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    document.title = `${title} · cloudsec console`;
    h1.current?.focus({ preventScroll: true });
  }, [title]);
  return (
    <section className={wide ? 'page page-wide' : 'page'} aria-labelledby="page-title">
      <h1 id="page-title" tabIndex={-1} ref={h1}>
        {title}
      </h1>
      {children}
    </section>
  );
}
