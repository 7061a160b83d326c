-- Held-out sets for central evaluation of a task's runs (issue 17), one per task version, and
-- the task's metrics that central evaluation computes on them.

-- CreateTable
CREATE TABLE "TaskHoldout" (
    "taskSha256" TEXT NOT NULL,
    "format" TEXT NOT NULL,
    "data" BYTEA NOT NULL,
    "sha256" TEXT NOT NULL,
    "byteLength" INTEGER NOT NULL,
    "rows" INTEGER NOT NULL,
    "uploadedAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "TaskHoldout_pkey" PRIMARY KEY ("taskSha256")
);

-- AddForeignKey
ALTER TABLE "TaskHoldout" ADD CONSTRAINT "TaskHoldout_taskSha256_fkey" FOREIGN KEY ("taskSha256") REFERENCES "Task"("sha256") ON DELETE CASCADE ON UPDATE CASCADE;

-- A task's metrics from central evaluation (a regression's mae and rmse have no column).
-- AlterTable
ALTER TABLE "Round" ADD COLUMN "centralMetrics" JSONB;
