-- DP-FedAvg runs (issue 14): each round's privacy accounting (clip norm, noise, steps, epsilon
-- at delta), null for runs without differential privacy; and why a run ended when it ended
-- on its own before its last round (the privacy budget), null otherwise.

-- AlterTable
ALTER TABLE "Round" ADD COLUMN "privacy" JSONB;

-- AlterTable
ALTER TABLE "Run" ADD COLUMN "endReason" TEXT;
