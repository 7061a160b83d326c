-- The federated statistics round (issue 17, item 3): a run records the combined statistics
-- and the task with their constants filled in (a derived, content-addressed record).

-- CreateTable
CREATE TABLE "ResolvedTask" (
    "sha256" TEXT NOT NULL,
    "sourceSha256" TEXT NOT NULL,
    "definition" JSONB NOT NULL,
    "paramCount" INTEGER NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "ResolvedTask_pkey" PRIMARY KEY ("sha256")
);

-- CreateIndex
CREATE INDEX "ResolvedTask_sourceSha256_idx" ON "ResolvedTask"("sourceSha256");

-- AlterTable
ALTER TABLE "Run" ADD COLUMN "statistics" JSONB,
ADD COLUMN "resolvedTaskSha256" TEXT;

-- AddForeignKey
ALTER TABLE "ResolvedTask" ADD CONSTRAINT "ResolvedTask_sourceSha256_fkey" FOREIGN KEY ("sourceSha256") REFERENCES "Task"("sha256") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Run" ADD CONSTRAINT "Run_resolvedTaskSha256_fkey" FOREIGN KEY ("resolvedTaskSha256") REFERENCES "ResolvedTask"("sha256") ON DELETE RESTRICT ON UPDATE CASCADE;
