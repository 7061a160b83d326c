-- Round totals are sums of per-client example counts: they outgrow INTEGER.
ALTER TABLE "Round" ALTER COLUMN "numExamples" SET DATA TYPE BIGINT,
ALTER COLUMN "federatedNumExamples" SET DATA TYPE BIGINT,
ALTER COLUMN "centralNumExamples" SET DATA TYPE BIGINT;

-- The seed derivation of each run: existing runs keep version 1 (what they were recorded
-- with), runs created from now on get version 2.
ALTER TABLE "Run" ADD COLUMN "seedDerivation" INTEGER NOT NULL DEFAULT 1;
ALTER TABLE "Run" ALTER COLUMN "seedDerivation" SET DEFAULT 2;
