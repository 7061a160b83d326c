-- CreateEnum
CREATE TYPE "RunStatus" AS ENUM ('created', 'running', 'completed', 'failed', 'stopped');

-- CreateEnum
CREATE TYPE "RoundStatus" AS ENUM ('committed', 'evaluated');

-- CreateTable
CREATE TABLE "Federation" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "description" TEXT,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Federation_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Client" (
    "id" TEXT NOT NULL,
    "federationId" TEXT NOT NULL,
    "organisation" TEXT NOT NULL,
    "label" TEXT,
    "tokenHash" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "revokedAt" TIMESTAMP(3),
    "lastSeenAt" TIMESTAMP(3),

    CONSTRAINT "Client_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Run" (
    "id" TEXT NOT NULL,
    "federationId" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "model" TEXT NOT NULL,
    "strategy" TEXT NOT NULL,
    "strategyOptions" JSONB NOT NULL,
    "rounds" INTEGER NOT NULL,
    "clientsPerRound" INTEGER,
    "fractionFit" DOUBLE PRECISION,
    "minClients" INTEGER NOT NULL,
    "roundDeadlineMs" INTEGER NOT NULL,
    "localEpochs" INTEGER NOT NULL,
    "batchSize" INTEGER NOT NULL,
    "learningRate" DOUBLE PRECISION NOT NULL,
    "seed" INTEGER NOT NULL,
    "data" JSONB NOT NULL,
    "status" "RunStatus" NOT NULL DEFAULT 'created',
    "error" TEXT,
    "currentRound" INTEGER NOT NULL DEFAULT 0,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "startedAt" TIMESTAMP(3),
    "finishedAt" TIMESTAMP(3),

    CONSTRAINT "Run_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Round" (
    "id" TEXT NOT NULL,
    "runId" TEXT NOT NULL,
    "number" INTEGER NOT NULL,
    "status" "RoundStatus" NOT NULL DEFAULT 'committed',
    "startedAt" TIMESTAMP(3) NOT NULL,
    "finishedAt" TIMESTAMP(3) NOT NULL,
    "durationMs" INTEGER NOT NULL,
    "selectedClientIds" TEXT[],
    "participantClientIds" TEXT[],
    "droppedClientIds" TEXT[],
    "numExamples" INTEGER NOT NULL,
    "trainLoss" DOUBLE PRECISION,
    "trainAccuracy" DOUBLE PRECISION,
    "federatedLoss" DOUBLE PRECISION,
    "federatedAccuracy" DOUBLE PRECISION,
    "federatedNumExamples" INTEGER,
    "centralLoss" DOUBLE PRECISION,
    "centralAccuracy" DOUBLE PRECISION,
    "centralNumExamples" INTEGER,
    "metrics" JSONB NOT NULL,

    CONSTRAINT "Round_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "ClientUpdate" (
    "id" TEXT NOT NULL,
    "roundId" TEXT NOT NULL,
    "clientId" TEXT NOT NULL,
    "arrivalIndex" INTEGER NOT NULL,
    "numExamples" INTEGER NOT NULL,
    "durationMs" INTEGER NOT NULL,
    "sizeBytes" INTEGER NOT NULL,
    "sha256" TEXT NOT NULL,
    "metrics" JSONB NOT NULL,

    CONSTRAINT "ClientUpdate_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "Checkpoint" (
    "id" TEXT NOT NULL,
    "runId" TEXT NOT NULL,
    "round" INTEGER NOT NULL,
    "weights" BYTEA NOT NULL,
    "sha256" TEXT NOT NULL,
    "paramCount" INTEGER NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Checkpoint_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "Federation_name_key" ON "Federation"("name");

-- CreateIndex
CREATE UNIQUE INDEX "Client_tokenHash_key" ON "Client"("tokenHash");

-- CreateIndex
CREATE INDEX "Client_federationId_idx" ON "Client"("federationId");

-- CreateIndex
CREATE INDEX "Run_federationId_idx" ON "Run"("federationId");

-- CreateIndex
CREATE INDEX "Run_status_idx" ON "Run"("status");

-- CreateIndex
CREATE UNIQUE INDEX "Round_runId_number_key" ON "Round"("runId", "number");

-- CreateIndex
CREATE UNIQUE INDEX "ClientUpdate_roundId_clientId_key" ON "ClientUpdate"("roundId", "clientId");

-- CreateIndex
CREATE UNIQUE INDEX "ClientUpdate_roundId_arrivalIndex_key" ON "ClientUpdate"("roundId", "arrivalIndex");

-- CreateIndex
CREATE INDEX "ClientUpdate_clientId_idx" ON "ClientUpdate"("clientId");

-- CreateIndex
CREATE UNIQUE INDEX "Checkpoint_runId_round_key" ON "Checkpoint"("runId", "round");

-- AddForeignKey
ALTER TABLE "Client" ADD CONSTRAINT "Client_federationId_fkey" FOREIGN KEY ("federationId") REFERENCES "Federation"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Run" ADD CONSTRAINT "Run_federationId_fkey" FOREIGN KEY ("federationId") REFERENCES "Federation"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Round" ADD CONSTRAINT "Round_runId_fkey" FOREIGN KEY ("runId") REFERENCES "Run"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ClientUpdate" ADD CONSTRAINT "ClientUpdate_roundId_fkey" FOREIGN KEY ("roundId") REFERENCES "Round"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ClientUpdate" ADD CONSTRAINT "ClientUpdate_clientId_fkey" FOREIGN KEY ("clientId") REFERENCES "Client"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "Checkpoint" ADD CONSTRAINT "Checkpoint_runId_fkey" FOREIGN KEY ("runId") REFERENCES "Run"("id") ON DELETE CASCADE ON UPDATE CASCADE;
