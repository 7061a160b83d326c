import type { ClientSession } from '../registry.js';

/** An idle client session of federation `fed`, as the socket edge registers one (tests). */
export function testSession(clientId: string, connectionId = `conn-${clientId}`): ClientSession {
  const now = new Date();
  return {
    clientId,
    federationId: 'fed',
    organisation: clientId,
    connectionId,
    info: { name: 'fake', version: '0', runtime: 'other', backend: 'none', numExamples: 1 },
    connectedAt: now,
    lastSeenAt: now,
    task: null,
    progress: null,
  };
}
