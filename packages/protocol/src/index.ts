export * from './admin-api.js';
export * from './errors.js';
export * from './events.js';
export * from './messages.js';
export * from './parser.js';
export * from './version.js';
export * from './weights.js';
