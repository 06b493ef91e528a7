import { useEffect, useState } from 'react';
import { logout } from './api/client';
import { Page } from './components/Page';
import { Account } from './pages/Account';
import { Admin } from './pages/Admin';
import { Audit } from './pages/Audit';
import { Confirm } from './pages/Confirm';
import { DocumentDetail } from './pages/DocumentDetail';
import { DocumentNew } from './pages/DocumentNew';
import { Documents } from './pages/Documents';
import { Forgot } from './pages/Forgot';
import { Login } from './pages/Login';
import { SignUp } from './pages/SignUp';
import { Link, match, navigate, useLocation } from './router';
import { canReadAudit, isAdmin, useSession, type Session } from './session';

const PUBLIC = ['/login', '/signup', '/confirm', '/forgot'];

function Redirect({ to }: { to: string }) {
  useEffect(() => navigate(to, { replace: true }), [to]);
  return null;
}

function route(path: string, session: Session | null) {
  if (PUBLIC.includes(path)) {
    if (session && path === '/login') return <Redirect to="/documents" />;
    switch (path) {
      case '/login':
        return <Login />;
      case '/signup':
        return <SignUp />;
      case '/confirm':
        return <Confirm />;
      default:
        return <Forgot />;
    }
  }
  if (!session) {
    const next = path === '/' ? '' : `?next=${encodeURIComponent(path)}`;
    return <Redirect to={`/login${next}`} />;
  }
  if (path === '/' || path === '') return <Redirect to="/documents" />;
  if (path === '/documents') return <Documents />;
  if (path === '/documents/new') return <DocumentNew />;
  const doc = match('/documents/:id', path);
  if (doc?.id) return <DocumentDetail key={doc.id} id={doc.id} />;
  if (path === '/account') return <Account />;
  if (path === '/audit') {
    return canReadAudit(session) ? <Audit /> : <Forbidden what="the audit log" />;
  }
  if (path === '/admin') return isAdmin(session) ? <Admin /> : <Forbidden what="administration" />;
  return (
    <Page title="Page not found">
      <p>
        There is no page at this address. <Link to="/documents">Go to the documents</Link>.
      </p>
    </Page>
  );
}

function Forbidden({ what }: { what: string }) {
  return (
    <Page title="Not allowed">
      <p>Only administrators of the organisation may open {what}.</p>
    </Page>
  );
}

function Nav({ session, path }: { session: Session; path: string }) {
  const [busy, setBusy] = useState(false);
  const items = [
    { to: '/documents', label: 'Documents', show: true },
    { to: '/audit', label: 'Audit log', show: canReadAudit(session) },
    { to: '/admin', label: 'Administration', show: isAdmin(session) },
    { to: '/account', label: 'Account', show: true },
  ];
  return (
    <nav aria-label="Main" className="nav">
      <ul>
        {items
          .filter((i) => i.show)
          .map((i) => (
            <li key={i.to}>
              <Link to={i.to} aria-current={path === i.to || path.startsWith(`${i.to}/`) ? 'page' : undefined}>
                {i.label}
              </Link>
            </li>
          ))}
      </ul>
      <div className="who">
        <span className="who-name">{session.email || session.claims.sub}</span>
        <span className="muted"> · {session.claims.tenant}</span>
        <button
          type="button"
          className="secondary"
          disabled={busy}
          onClick={async () => {
            setBusy(true);
            try {
              await logout();
            } finally {
              setBusy(false);
              navigate('/login', { replace: true });
            }
          }}
        >
          Log out
        </button>
      </div>
    </nav>
  );
}

export function App() {
  const session = useSession();
  const { path } = useLocation();
  useEffect(() => {
    // For the browser tests' timing: the first page is on screen.
    performance.mark('console-rendered');
  }, []);
  return (
    <>
      <a href="#main" className="skip-link">
        Skip to content
      </a>
      <header className="header">
        <Link to={session ? '/documents' : '/login'} className="brand">
          cloudsec <span>console</span>
        </Link>
        {session && <Nav session={session} path={path} />}
      </header>
      <main id="main" tabIndex={-1}>
        {route(path, session)}
      </main>
      <footer className="footer">
        <p>Your session is kept in this tab's memory only: reloading the page logs you out.</p>
      </footer>
    </>
  );
}
