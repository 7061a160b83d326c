import { StrictMode, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { ApiError, api, handleUnauthorized, setCsrfToken, type User } from './api.js';
import { useHealth } from './health.js';
import { connectLive, disconnectLive, useLive } from './live.js';
import { ClientsPage } from './pages/clients.js';
import { FederationPage, FederationsPage } from './pages/federations.js';
import { LoginPage } from './pages/login.js';
import { RoundPage } from './pages/round.js';
import { RunPage } from './pages/run.js';
import { NewRunPage, RunsPage } from './pages/runs.js';
import { TaskPage, TasksPage } from './pages/tasks.js';
import { TokensPage } from './pages/tokens.js';
import { UsersPage } from './pages/users.js';
import { SessionContext } from './session.js';
import './styles.css';
import { Link, match, navigate, usePath } from './ui.js';

function Page({ path, user }: { path: string; user: User }) {
  if (path === '/' || path === '/runs') return <RunsPage />;
  if (path === '/runs/new') return <NewRunPage />;
  const round = match('/runs/:id/rounds/:round', path);
  if (round) return <RoundPage runId={round['id'] ?? ''} round={Number(round['round'])} />;
  const run = match('/runs/:id', path);
  if (run) return <RunPage id={run['id'] ?? ''} />;
  if (path === '/federations') return <FederationsPage />;
  const federation = match('/federations/:id', path);
  if (federation) return <FederationPage id={federation['id'] ?? ''} />;
  if (path === '/clients') return <ClientsPage />;
  if (path === '/tasks') return <TasksPage />;
  const taskVersion = match('/tasks/:name/v/:version', path);
  if (taskVersion) {
    return <TaskPage name={taskVersion['name'] ?? ''} version={Number(taskVersion['version'])} />;
  }
  const task = match('/tasks/:name', path);
  if (task) return <TaskPage name={task['name'] ?? ''} />;
  if (path === '/tokens') return <TokensPage />;
  if (path === '/users' && user.role === 'admin') return <UsersPage />;
  return (
    <section>
      <h1>Not found</h1>
      <p>
        <Link href="/runs">Back to the runs</Link>
      </p>
    </section>
  );
}

function App() {
  const [user, setUser] = useState<User | null | undefined>(undefined);
  const path = usePath();
  const live = useLive();
  const health = useHealth();
  const databaseDown = health?.down.find((part) => part.component === 'database');

  useEffect(() => {
    handleUnauthorized(() => {
      disconnectLive();
      setUser(null);
    });
    api<{ user: User; csrfToken: string }>('GET', '/auth/session').then(
      (session) => {
        setCsrfToken(session.csrfToken);
        setUser(session.user);
      },
      (error: unknown) => {
        if (!(error instanceof ApiError) || error.status === 401) setUser(null);
      },
    );
  }, []);
  useEffect(() => {
    if (user) connectLive();
  }, [user]);

  if (user === undefined) return null;
  if (user === null) return <LoginPage onLogin={setUser} />;

  const logout = async () => {
    await api('POST', '/auth/logout').catch(() => {});
    disconnectLive();
    setCsrfToken('');
    setUser(null);
    navigate('/');
  };
  const nav = [
    ['/runs', 'Runs'],
    ['/federations', 'Federations'],
    ['/tasks', 'Tasks'],
    ['/clients', 'Clients'],
    ['/tokens', 'API tokens'],
    ...(user.role === 'admin' ? [['/users', 'Users']] : []),
  ] as const;
  return (
    <SessionContext.Provider value={user}>
      <header>
        <strong className="brand">Tessera</strong>
        <nav>
          {nav.map(([href, label]) => (
            <Link key={href} href={href} className={path.startsWith(href) ? 'active' : ''}>
              {label}
            </Link>
          ))}
        </nav>
        <span className={live.connected ? 'live on' : 'live'} title="live updates">
          {live.connected ? '● live' : '○ offline'}
        </span>
        {databaseDown && (
          <span
            className="health down"
            role="status"
            data-testid="database-down"
            title={databaseDown.error ?? undefined}
          >
            database unavailable
            {databaseDown.since
              ? ` since ${new Date(databaseDown.since).toLocaleTimeString()}`
              : ''}
            ; runs are waiting
          </span>
        )}
        <span className="who" data-testid="who">
          {user.email} ({user.role})
        </span>
        <button type="button" onClick={logout}>
          Log out
        </button>
      </header>
      <main>
        <Page path={path} user={user} />
      </main>
    </SessionContext.Provider>
  );
}

const root = document.getElementById('root');
if (root)
  createRoot(root).render(
    <StrictMode>
      <App />
    </StrictMode>,
  );
