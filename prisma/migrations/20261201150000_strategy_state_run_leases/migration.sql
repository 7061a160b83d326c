-- AlterTable
ALTER TABLE "Checkpoint" ADD COLUMN "strategyState" BYTEA;

-- CreateTable
CREATE TABLE "RunLease" (
    "runId" TEXT NOT NULL,
    "owner" TEXT NOT NULL,
    "token" BIGINT NOT NULL,
    "acquiredAt" TIMESTAMP(3) NOT NULL,
    "renewedAt" TIMESTAMP(3) NOT NULL,
    "expiresAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "RunLease_pkey" PRIMARY KEY ("runId")
);

-- CreateIndex
CREATE INDEX "RunLease_expiresAt_idx" ON "RunLease"("expiresAt");

-- AddForeignKey
ALTER TABLE "RunLease" ADD CONSTRAINT "RunLease_runId_fkey" FOREIGN KEY ("runId") REFERENCES "Run"("id") ON DELETE CASCADE ON UPDATE CASCADE;
