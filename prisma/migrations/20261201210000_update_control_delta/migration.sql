-- SCAFFOLD runs replayable (issue 13 item 2): each kept update's control-variate change Δc_i
-- and its sha256, so that replay can fold the server's control variate c again; null for
-- other strategies, for updates whose bytes are not kept, and for updates committed before
-- these columns existed (those runs are verified by their checkpoints' hashes, as before).

-- AlterTable
ALTER TABLE "ClientUpdate" ADD COLUMN "controlDelta" BYTEA,
ADD COLUMN "controlDeltaSha256" TEXT;
