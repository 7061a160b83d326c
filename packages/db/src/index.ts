/**
 * @tessera/db: the only package that talks to the database. Prisma 7 over PostgreSQL
 * (@prisma/adapter-pg) or embedded PGlite, migrations applied at open, and repositories
 * that return plain records.
 */
export type { ClientRepository, IssueTokenInput } from './clients.js';
export {
  type Database,
  DEFAULT_PGLITE_DIR,
  type OpenDatabaseOptions,
  openDatabase,
} from './database.js';
export type { CreateFederationInput, FederationRepository } from './federations.js';
export type { PrismaClient } from './generated/client.js';
export {
  applyMigrations,
  defaultMigrationsDir,
  type MigrationReport,
  type MigrationSession,
} from './migrate.js';
export {
  type CheckpointRecord,
  type ClientRecord,
  type ClientUpdateInput,
  type ClientUpdateRecord,
  type EvaluationResult,
  type FederationRecord,
  ROUND_STATUSES,
  type RoundCommit,
  type RoundEvaluation,
  type RoundRecord,
  type RoundStatus,
  RUN_STATUSES,
  type RunConfig,
  type RunRecord,
  type RunStatus,
} from './records.js';
export type { RoundRepository } from './rounds.js';
export type { CreateRunInput, RunRepository } from './runs.js';
export { validateRunConfig } from './runs.js';
