-- Local differential privacy (issue 14): a run's local DP settings (clip norm, noise
-- multiplier, delta); null for runs without it.

-- AlterTable
ALTER TABLE "Run" ADD COLUMN "localDp" JSONB;
