-- Secure aggregation (issue 14): a run's SecAgg settings (clip range, most examples per client,
-- threshold share, step deadline); null for runs whose updates are sent in the clear.

-- AlterTable
ALTER TABLE "Run" ADD COLUMN "secureAggregation" JSONB;
