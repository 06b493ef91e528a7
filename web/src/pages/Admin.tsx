import { useCallback, useEffect, useState, useSyncExternalStore, type FormEvent } from 'react';
import { call, client } from '../api/client';
import { asApiError, type ApiError } from '../api/errors';
import { MFA_MODES, type Group } from '../api/types';
import { ErrorBox, Notice } from '../components/ErrorBox';
import { SelectField, TextField } from '../components/Field';
import { Page } from '../components/Page';
import * as v from '../lib/validate';
import { getSession, subscribe, useSession } from '../session';

// The API has no call that lists a tenant's users, so the page lists those
// it knows of: the ones created here, the members of groups, and ids added
// by hand. It lives as long as the page does, like the tokens.
interface KnownUser {
  id: string;
  email: string;
  state: string;
}
let known: KnownUser[] = [];
const knownListeners = new Set<() => void>();
function setKnown(next: KnownUser[]) {
  known = next;
  for (const l of knownListeners) l();
}
function rememberUser(u: Partial<KnownUser> & { id: string }) {
  const i = known.findIndex((k) => k.id === u.id);
  if (i < 0) setKnown([...known, { email: '', state: '', ...u }]);
  else setKnown(known.map((k, j) => (j === i ? { ...k, ...Object.fromEntries(Object.entries(u).filter(([, x]) => x)) } : k)));
}
// Forgotten with the session, like the tokens.
subscribe(() => {
  if (!getSession() && known.length > 0) setKnown([]);
});
function useKnown(): KnownUser[] {
  return useSyncExternalStore(
    (l) => {
      knownListeners.add(l);
      return () => knownListeners.delete(l);
    },
    () => known,
  );
}

const USER_ID = /^[0-9a-fA-F-]{36}$/;

export function Admin() {
  const session = useSession();
  const [groups, setGroups] = useState<Group[] | null>(null);
  const [groupsError, setGroupsError] = useState<ApiError | null>(null);

  const loadGroups = useCallback(async () => {
    setGroupsError(null);
    try {
      const data = await call(() => client.GET('/v1/groups'));
      setGroups(data.groups ?? []);
      for (const g of data.groups ?? []) for (const id of g.memberIds ?? []) rememberUser({ id });
    } catch (e) {
      setGroupsError(asApiError(e));
    }
  }, []);

  useEffect(() => {
    if (session) rememberUser({ id: session.claims.sub, email: session.email, state: 'you' });
    void loadGroups();
  }, [loadGroups, session]);

  return (
    <Page title="Administration" wide>
      <CreateUser />
      <Users selfId={session?.claims.sub ?? ''} onChanged={loadGroups} />
      <Groups groups={groups} error={groupsError} reload={loadGroups} />
      <TenantMfa />
    </Page>
  );
}

function CreateUser() {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [admin, setAdmin] = useState(false);
  const [errors, setErrors] = useState<v.Errors>({});
  const [error, setError] = useState<ApiError | null>(null);
  const [notice, setNotice] = useState('');
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const found = v.collect({ email: v.email(email), password: v.password(password, 'Initial password') });
    setErrors(found);
    setError(null);
    setNotice('');
    if (v.hasErrors(found)) return;
    setBusy(true);
    try {
      const data = await call(() =>
        client.POST('/v1/users', { body: { email: email.trim(), password, tenantAdmin: admin } }),
      );
      rememberUser({ id: data.userId ?? '', email: email.trim(), state: admin ? 'created (admin)' : 'created' });
      setNotice(`Created ${email.trim()} (user id ${data.userId}).`);
      setEmail('');
      setPassword('');
      setAdmin(false);
    } catch (err) {
      const apiErr = asApiError(err);
      setError(apiErr);
      setErrors(v.collect({ email: apiErr.fieldError('email'), password: apiErr.fieldError('password') }));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="create-user">
      <h2 id="create-user">Add a user</h2>
      <Notice>{notice}</Notice>
      <form onSubmit={submit} noValidate className="form">
        <ErrorBox error={error} />
        <TextField
          label="Email"
          type="email"
          autoComplete="off"
          value={email}
          onChange={(e) => setEmail(e.target.value)}
          error={errors.email}
        />
        <TextField
          label="Initial password"
          type="password"
          autoComplete="new-password"
          hint="Under the sign-up policy; tell it to the user."
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          error={errors.password}
        />
        <div className="checkbox">
          <input id="new-user-admin" type="checkbox" checked={admin} onChange={(e) => setAdmin(e.target.checked)} />
          <label htmlFor="new-user-admin">Administrator of the organisation</label>
        </div>
        <div className="actions">
          <button type="submit" disabled={busy}>
            Add user
          </button>
        </div>
      </form>
    </section>
  );
}

type Action = 'disable' | 'enable' | 'resetMfa' | 'globalSignOut' | 'delete';

const ACTIONS: { action: Action; label: string; done: string; className?: string }[] = [
  { action: 'disable', label: 'Disable', done: 'disabled' },
  { action: 'enable', label: 'Enable', done: 'enabled' },
  { action: 'resetMfa', label: 'Reset MFA', done: 'MFA reset' },
  { action: 'globalSignOut', label: 'Sign out', done: 'signed out everywhere' },
  { action: 'delete', label: 'Delete', done: 'deleted', className: 'danger' },
];

function runAction(action: Action, userId: string) {
  const path = { params: { path: { user_id: userId } } } as const;
  switch (action) {
    case 'disable':
      return call(() => client.POST('/v1/users/{user_id}:disable', { ...path, body: {} }));
    case 'enable':
      return call(() => client.POST('/v1/users/{user_id}:enable', { ...path, body: {} }));
    case 'resetMfa':
      return call(() => client.POST('/v1/users/{user_id}:resetMfa', { ...path, body: {} }));
    case 'globalSignOut':
      return call(() => client.POST('/v1/users/{user_id}:globalSignOut', { ...path, body: {} }));
    case 'delete':
      return call(() => client.DELETE('/v1/users/{user_id}', path));
  }
}

function Users({ selfId, onChanged }: { selfId: string; onChanged: () => void }) {
  const users = useKnown();
  const [error, setError] = useState<ApiError | null>(null);
  const [notice, setNotice] = useState('');
  const [confirmDelete, setConfirmDelete] = useState<string | null>(null);
  const [addId, setAddId] = useState('');
  const [addError, setAddError] = useState<string>();
  const [busy, setBusy] = useState(false);

  const act = async (action: Action, u: KnownUser) => {
    setError(null);
    setNotice('');
    setBusy(true);
    try {
      await runAction(action, u.id);
      const who = u.email || u.id;
      const done = ACTIONS.find((a) => a.action === action)!.done;
      if (action === 'delete') setKnown(known.filter((k) => k.id !== u.id));
      else rememberUser({ id: u.id, state: done });
      setNotice(`${who}: ${done}.`);
      onChanged();
    } catch (e) {
      setError(asApiError(e));
    } finally {
      setBusy(false);
      setConfirmDelete(null);
    }
  };

  const add = (e: FormEvent) => {
    e.preventDefault();
    const id = addId.trim();
    const problem = v.required(id, 'User id') ?? (USER_ID.test(id) ? undefined : 'A user id looks like 8-4-4-4-12 hex digits.');
    setAddError(problem);
    if (problem) return;
    rememberUser({ id });
    setAddId('');
  };

  return (
    <section aria-labelledby="users">
      <h2 id="users">Users</h2>
      <p className="hint">
        The API does not list an organisation's users: this table shows you, the users added here, and members of
        groups. Add another user by id to act on them.
      </p>
      <Notice>{notice}</Notice>
      <ErrorBox error={error} />
      <div className="table-wrap" role="region" aria-label="Table of users" tabIndex={0}>
        <table data-testid="users-table">
          <thead>
            <tr>
              <th scope="col">User</th>
              <th scope="col">State</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {users.map((u) => {
              const who = u.email || u.id;
              return (
                <tr key={u.id}>
                  <td>
                    {u.email && <div>{u.email}</div>}
                    <code className="small">{u.id}</code>
                  </td>
                  <td>{u.state}</td>
                  <td>
                    {u.id === selfId ? (
                      <span className="muted">Manage yourself under Account.</span>
                    ) : confirmDelete === u.id ? (
                      <div className="actions" role="group" aria-label={`Confirm deletion of ${who}`}>
                        <button type="button" className="danger" disabled={busy} onClick={() => act('delete', u)}>
                          Delete {who} for good
                        </button>
                        <button type="button" className="secondary" onClick={() => setConfirmDelete(null)}>
                          Keep
                        </button>
                      </div>
                    ) : (
                      <div className="actions compact">
                        {ACTIONS.map((a) => (
                          <button
                            key={a.action}
                            type="button"
                            className={a.className ?? 'secondary'}
                            disabled={busy}
                            aria-label={`${a.label} ${who}`}
                            onClick={() => (a.action === 'delete' ? setConfirmDelete(u.id) : act(a.action, u))}
                          >
                            {a.label}
                          </button>
                        ))}
                      </div>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      <form onSubmit={add} noValidate className="form inline-form">
        <TextField label="User id" value={addId} onChange={(e) => setAddId(e.target.value)} error={addError} />
        <div className="actions">
          <button type="submit" className="secondary">
            Add to the table
          </button>
        </div>
      </form>
    </section>
  );
}

function Groups({ groups, error, reload }: { groups: Group[] | null; error: ApiError | null; reload: () => void }) {
  const users = useKnown();
  const [userId, setUserId] = useState('');
  const [group, setGroup] = useState('');
  const [errors, setErrors] = useState<v.Errors>({});
  const [actError, setActError] = useState<ApiError | null>(null);
  const [notice, setNotice] = useState('');
  const [busy, setBusy] = useState(false);
  const nameOf = (id: string) => users.find((u) => u.id === id)?.email || id;

  const add = async (e: FormEvent) => {
    e.preventDefault();
    const found = v.collect({
      userId: v.required(userId, 'User'),
      group:
        v.required(group, 'Group') ??
        v.maxChars(group, 64, 'Group') ??
        (/^[A-Za-z0-9._-]+$/.test(group.trim()) ? undefined : 'Group names use letters, digits, ".", "_" and "-".'),
    });
    setErrors(found);
    setActError(null);
    setNotice('');
    if (v.hasErrors(found)) return;
    setBusy(true);
    try {
      await call(() =>
        client.POST('/v1/users/{user_id}/groups', {
          params: { path: { user_id: userId } },
          body: { group: group.trim() },
        }),
      );
      setNotice(`${nameOf(userId)} joined ${group.trim()}; it shows in their next token.`);
      setGroup('');
      reload();
    } catch (err) {
      const apiErr = asApiError(err);
      setActError(apiErr);
      setErrors(v.collect({ group: apiErr.fieldError('group'), userId: apiErr.fieldError('userId') }));
    } finally {
      setBusy(false);
    }
  };

  const removeMember = async (g: string, id: string) => {
    setActError(null);
    setNotice('');
    setBusy(true);
    try {
      await call(() =>
        client.DELETE('/v1/users/{user_id}/groups/{group}', { params: { path: { user_id: id, group: g } } }),
      );
      setNotice(`${nameOf(id)} left ${g}.`);
      reload();
    } catch (err) {
      setActError(asApiError(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="groups">
      <h2 id="groups">Groups</h2>
      <Notice>{notice}</Notice>
      <ErrorBox error={error ?? actError} />
      {groups && groups.length === 0 && <p>No group has members yet.</p>}
      {groups && groups.length > 0 && (
        <div className="table-wrap" role="region" aria-label="Table of groups" tabIndex={0}>
          <table>
            <thead>
              <tr>
                <th scope="col">Group</th>
                <th scope="col">Grants</th>
                <th scope="col">Members</th>
              </tr>
            </thead>
            <tbody>
              {groups.map((g) => (
                <tr key={g.name}>
                  <td>{g.name}</td>
                  <td>{(g.scopes ?? []).join(', ') || <span className="muted">nothing extra</span>}</td>
                  <td>
                    <ul className="members">
                      {(g.memberIds ?? []).map((id) => (
                        <li key={id}>
                          {nameOf(id)}{' '}
                          <button
                            type="button"
                            className="link"
                            disabled={busy}
                            aria-label={`Remove ${nameOf(id)} from ${g.name}`}
                            onClick={() => removeMember(g.name ?? '', id)}
                          >
                            Remove
                          </button>
                        </li>
                      ))}
                    </ul>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <form onSubmit={add} noValidate className="form">
        <h3>Add a user to a group</h3>
        <SelectField label="User" value={userId} onChange={(e) => setUserId(e.target.value)} error={errors.userId}>
          <option value="">Choose…</option>
          {users.map((u) => (
            <option key={u.id} value={u.id}>
              {u.email || u.id}
            </option>
          ))}
        </SelectField>
        <TextField
          label="Group"
          hint="e.g. restricted (reads restricted documents) or auditors (reads the audit log)"
          value={group}
          onChange={(e) => setGroup(e.target.value)}
          error={errors.group}
        />
        <div className="actions">
          <button type="submit" disabled={busy}>
            Add to group
          </button>
        </div>
      </form>
    </section>
  );
}

function TenantMfa() {
  const [mode, setMode] = useState('');
  const [error, setError] = useState<ApiError | null>(null);
  const [fieldError, setFieldError] = useState<string>();
  const [notice, setNotice] = useState('');
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    setNotice('');
    setFieldError(mode ? undefined : 'Choose a mode.');
    if (!mode) return;
    setBusy(true);
    try {
      await call(() =>
        client.POST('/v1/tenant:setMfaMode', { body: { mode: mode as (typeof MFA_MODES)[number] } }),
      );
      setNotice(`Two-step login is now ${mode.toLowerCase()} for the organisation.`);
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="tenant-mfa">
      <h2 id="tenant-mfa">Two-step login for the organisation</h2>
      <Notice>{notice}</Notice>
      <form onSubmit={submit} noValidate className="form">
        <ErrorBox error={error} />
        <SelectField
          label="Mode"
          hint="Optional is the default. Required makes users without an authenticator set one up at their next login."
          value={mode}
          onChange={(e) => setMode(e.target.value)}
          error={fieldError}
        >
          <option value="">Choose…</option>
          {MFA_MODES.map((m) => (
            <option key={m} value={m}>
              {m.charAt(0) + m.slice(1).toLowerCase()}
            </option>
          ))}
        </SelectField>
        <div className="actions">
          <button type="submit" disabled={busy}>
            Set mode
          </button>
        </div>
      </form>
    </section>
  );
}
