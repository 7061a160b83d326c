import {
  type AnchorHTMLAttributes,
  type ReactNode,
  useCallback,
  useEffect,
  useState,
  useSyncExternalStore,
} from 'react';

// --- a router over the History API: the coordinator serves index.html for these paths

const routeListeners = new Set<() => void>();
window.addEventListener('popstate', () => {
  for (const listener of routeListeners) listener();
});

export function navigate(path: string): void {
  window.history.pushState(null, '', path);
  for (const listener of routeListeners) listener();
}

export function usePath(): string {
  return useSyncExternalStore(
    (listener) => {
      routeListeners.add(listener);
      return () => routeListeners.delete(listener);
    },
    () => window.location.pathname,
  );
}

/** `/runs/:id` against `/runs/abc`: `{ id: 'abc' }`, or null. */
export function match(pattern: string, path: string): Record<string, string> | null {
  const want = pattern.split('/');
  const got = path.replace(/\/$/, '').split('/');
  if (want.length !== got.length) return null;
  const params: Record<string, string> = {};
  for (let k = 0; k < want.length; k++) {
    const part = want[k] ?? '';
    const value = got[k] ?? '';
    if (part.startsWith(':')) params[part.slice(1)] = decodeURIComponent(value);
    else if (part !== value) return null;
  }
  return params;
}

export function Link(props: AnchorHTMLAttributes<HTMLAnchorElement> & { href: string }) {
  const { href, onClick, ...rest } = props;
  return (
    <a
      href={href}
      onClick={(event) => {
        onClick?.(event);
        if (event.defaultPrevented || event.metaKey || event.ctrlKey || event.button !== 0) return;
        event.preventDefault();
        navigate(href);
      }}
      {...rest}
    />
  );
}

// --- data loading

/** Loads once per `deps` change; `reload` fetches again; `set` edits the loaded value in place. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]) {
  const [value, setValue] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  const [version, setVersion] = useState(0);
  // biome-ignore lint/correctness/useExhaustiveDependencies: the caller names the dependencies
  useEffect(() => {
    let current = true;
    load().then(
      (loaded) => {
        if (current) {
          setValue(loaded);
          setError(null);
        }
      },
      (cause: unknown) => {
        if (current) setError((cause as Error).message);
      },
    );
    return () => {
      current = false;
    };
  }, [...deps, version]);
  const reload = useCallback(() => setVersion((v) => v + 1), []);
  return { value, error, reload, set: setValue };
}

// --- forms

export function Field(props: {
  label: string;
  name: string;
  error?: string | undefined;
  hint?: string;
  children: ReactNode;
}) {
  return (
    // biome-ignore lint/a11y/noLabelWithoutControl: the control is `children`, inside the label
    <label className={`field${props.error ? ' invalid' : ''}`} data-field={props.name}>
      <span className="label">{props.label}</span>
      {props.children}
      {props.hint && !props.error ? <span className="hint">{props.hint}</span> : null}
      {props.error ? (
        <span className="error" role="alert" data-error-for={props.name}>
          {props.error}
        </span>
      ) : null}
    </label>
  );
}

export function ErrorBanner({ message }: { message: string | null | undefined }) {
  return message ? (
    <div className="banner error" role="alert">
      {message}
    </div>
  ) : null;
}

// --- formatting (durations and numbers: format.ts, pure)

export {
  formatCountdown,
  formatLoss,
  formatMetric,
  formatMs,
  formatNumber,
  formatPercent,
} from './format.js';

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  return new Date(iso).toLocaleString(undefined, {
    dateStyle: 'short',
    timeStyle: 'medium',
  });
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(2)} MiB`;
}

export function StatusBadge({ status }: { status: string }) {
  return <span className={`badge status-${status}`}>{status}</span>;
}

/** Re-renders every `ms` (for countdowns). */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}
