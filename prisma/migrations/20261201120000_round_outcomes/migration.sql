-- Each selected client's outcome in a round (updated, failed, rejected, dropped, timed-out)
-- with its reason. Rounds committed before this migration have none recorded.
ALTER TABLE "Round" ADD COLUMN "outcomes" JSONB NOT NULL DEFAULT '[]';
