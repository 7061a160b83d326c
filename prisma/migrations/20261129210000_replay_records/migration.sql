-- CreateEnum
CREATE TYPE "RunOrigin" AS ENUM ('live', 'simulation', 'replay');

-- AlterTable
ALTER TABLE "Run" ADD COLUMN     "keepUpdates" BOOLEAN NOT NULL DEFAULT false,
ADD COLUMN     "keptUpdateBytes" BIGINT NOT NULL DEFAULT 0,
ADD COLUMN     "origin" "RunOrigin" NOT NULL DEFAULT 'live',
ADD COLUMN     "sourceRunId" TEXT,
ADD COLUMN     "updateStorageLimitMb" INTEGER NOT NULL DEFAULT 1024,
ADD COLUMN     "updatesTruncatedAtRound" INTEGER;

-- AlterTable
ALTER TABLE "ClientUpdate" ADD COLUMN     "backend" TEXT,
ADD COLUMN     "runtime" TEXT,
ADD COLUMN     "weights" BYTEA;

-- CreateIndex
CREATE INDEX "Run_sourceRunId_idx" ON "Run"("sourceRunId");

-- AddForeignKey
ALTER TABLE "Run" ADD CONSTRAINT "Run_sourceRunId_fkey" FOREIGN KEY ("sourceRunId") REFERENCES "Run"("id") ON DELETE SET NULL ON UPDATE CASCADE;
