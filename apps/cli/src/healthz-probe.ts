#!/usr/bin/env node
/**
 * Asks a coordinator's /healthz every INTERVAL_MS, from its own process, and prints one line
 * per answer: `<sent at, ms since the epoch> <latency ms>`. Its own process, because a probe on
 * the coordinator's event loop would be delayed by the very stalls it is there to see (its
 * timer fires late and the stall goes unmeasured); here the latency includes the time the
 * coordinator's loop kept the request waiting. One request at a time, as a health checker
 * asks: a stall of S ms shows as one answer of up to S ms. (Requests sent on a fixed schedule
 * regardless would pile up whenever the coordinator answers fewer than 1000 / INTERVAL_MS a
 * second, and measure the pile, not the coordinator.)
 *
 *   node healthz-probe.js URL [INTERVAL_MS]
 */
import http from 'node:http';

const [base, intervalText] = process.argv.slice(2);
if (!base) throw new Error('usage: healthz-probe.js URL [INTERVAL_MS]');
const url = new URL('/healthz', base);
const intervalMs = Number(intervalText ?? 20);
// Keep-alive, so that what is measured is the coordinator answering, not TCP handshakes.
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

const probe = () => {
  const sentAt = Date.now();
  const start = process.hrtime.bigint();
  // The next request leaves INTERVAL_MS after this one was sent, or at once if it took longer.
  const next = () => setTimeout(probe, Math.max(0, sentAt + intervalMs - Date.now()));
  const request = http.get(url, { agent }, (response) => {
    response.resume();
    response.on('end', () => {
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      process.stdout.write(`${sentAt} ${ms.toFixed(2)}\n`);
      next();
    });
  });
  request.on('error', next);
};
probe();
process.on('SIGTERM', () => process.exit(0));
