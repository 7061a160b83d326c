import { useEffect, useState } from 'react';

/** What the console reads of the coordinator's `GET /healthz` (README, "Running it for real"). */
export interface HealthReport {
  ok: boolean;
  status: 'ok' | 'degraded';
  down: Array<{ component: string; since: string | null; error: string | null }>;
}

const POLL_MS = 5_000;

/**
 * The coordinator's health, polled from /healthz (which never needs the database): what the
 * header shows while runs wait out a database outage. Null until the first answer, and while
 * the coordinator itself does not answer (the live-feed indicator says that).
 */
export function useHealth(): HealthReport | null {
  const [health, setHealth] = useState<HealthReport | null>(null);
  useEffect(() => {
    let stopped = false;
    const poll = async () => {
      try {
        const response = await fetch('/healthz', { cache: 'no-store' });
        const report = (await response.json()) as HealthReport;
        if (!stopped) setHealth(report);
      } catch {
        if (!stopped) setHealth(null);
      }
    };
    void poll();
    const timer = setInterval(() => void poll(), POLL_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, []);
  return health;
}
