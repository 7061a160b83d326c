/**
 * @tessera/db: the only package that talks to the database. Prisma 7 over PostgreSQL
 * (@prisma/adapter-pg) or embedded PGlite, migrations applied at open, and repositories
 * that return plain records.
 */
export {
  type AccountRepository,
  type CreateUserInput,
  hashPassword,
  type LoginLimit,
  type LoginReservation,
  PASSWORD_MAX_LENGTH,
  PASSWORD_MIN_LENGTH,
  type SessionRecord,
  USER_ROLES,
  type UserRecord,
  type UserRole,
  verifyPassword,
} from './accounts.js';
export {
  API_TOKEN_MAX_DAYS,
  API_TOKEN_NAME_MAX_LENGTH,
  API_TOKEN_PREFIX,
  API_TOKEN_SCOPES,
  type ApiTokenRecord,
  type ApiTokenRepository,
  type ApiTokenScope,
  type CreateApiTokenInput,
} from './api-tokens.js';
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
  checkFence,
  type LeaseFence,
  type LeaseRepository,
  MAX_LEASE_MS,
  type RunLeaseRecord,
} from './leases.js';
export {
  applyMigrations,
  defaultMigrationsDir,
  type MigrationReport,
  type MigrationSession,
} from './migrate.js';
export {
  type CheckpointRecord,
  CLIENT_OUTCOMES,
  type ClientOutcome,
  type ClientOutcomeKind,
  type ClientRecord,
  type ClientUpdateInput,
  type ClientUpdateRecord,
  DEFAULT_UPDATE_STORAGE_LIMIT_MB,
  type EvaluationResult,
  type FederationRecord,
  HOLDOUT_FORMATS,
  type HoldoutFormat,
  type KeptUpdate,
  MAX_OUTCOME_CODE_LENGTH,
  MAX_OUTCOME_REASON_LENGTH,
  type PhasesAfterCommit,
  type PhasesBeforeCommit,
  type ResolvedTaskRecord,
  ROUND_STATUSES,
  type RoundCommit,
  type RoundEvaluation,
  type RoundPhases,
  type RoundPrivacyRecord,
  type RoundRecord,
  type RoundStatus,
  RUN_ORIGINS,
  RUN_STATUSES,
  type RunConfig,
  type RunConfigInput,
  type RunOrigin,
  type RunRecord,
  type RunStatus,
  type TaskHoldoutRecord,
  type TaskRecord,
} from './records.js';
export {
  DatabaseHealth,
  type DatabaseHealthSnapshot,
  DEFAULT_RETRY_POLICY,
  isTransientDatabaseError,
  type RetryingDatabase,
  type RetryOptions,
  type RetryPolicy,
  withRetries,
} from './retry.js';
export type { RoundRepository } from './rounds.js';
export type { CreateRunInput, RecordStatisticsInput, RunRepository } from './runs.js';
export {
  type CreateTaskInput,
  type PutHoldoutInput,
  TASK_NAME_PATTERN,
  type TaskRepository,
} from './tasks.js';
