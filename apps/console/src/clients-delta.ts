/** The client-list delta of the `/admin` feed (`clients-delta`), as the coordinator sends it. */
export interface ClientsDelta<Row extends { clientId: string }> {
  added: Row[];
  changed: Row[];
  removed: string[];
}

/**
 * Applies a delta to the list: rows of `added` and `changed` replace the row of the same id in
 * place or are appended, `removed` ids are dropped. Applying a delta the list already reflects
 * changes nothing, so a delta that crosses a fresh snapshot does no harm.
 */
export function applyClientsDelta<Row extends { clientId: string }>(
  clients: readonly Row[],
  delta: ClientsDelta<Row>,
): Row[] {
  const removed = new Set(delta.removed);
  const upserts = new Map<string, Row>();
  for (const row of [...delta.added, ...delta.changed]) upserts.set(row.clientId, row);
  const next: Row[] = [];
  for (const client of clients) {
    if (removed.has(client.clientId)) continue;
    const replacement = upserts.get(client.clientId);
    upserts.delete(client.clientId);
    next.push(replacement ?? client);
  }
  for (const row of upserts.values()) if (!removed.has(row.clientId)) next.push(row);
  return next;
}
