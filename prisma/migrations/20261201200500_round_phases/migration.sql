-- Honest round timings (issue 15 item 6): where each round's time went, in milliseconds
-- (waiting for clients, distribution, training, aggregation, commit, evaluation); null for
-- rounds committed before this column existed.

-- AlterTable
ALTER TABLE "Round" ADD COLUMN "phases" JSONB;
