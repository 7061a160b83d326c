/**
 * The wire protocol version. A client sends it in the Socket.IO handshake (`auth.protocolVersion`);
 * the coordinator refuses any other value with PROTOCOL_VERSION_MISMATCH. Bump it on any change
 * that an existing client could misread.
 */
export const PROTOCOL_VERSION = 2;
