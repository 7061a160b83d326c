-- CreateTable
CREATE TABLE "Task" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "version" INTEGER NOT NULL,
    "sha256" TEXT NOT NULL,
    "definition" JSONB NOT NULL,
    "paramCount" INTEGER NOT NULL,
    "weights" BYTEA,
    "builtin" BOOLEAN NOT NULL DEFAULT false,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "Task_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "Task_sha256_key" ON "Task"("sha256");

-- CreateIndex
CREATE UNIQUE INDEX "Task_name_version_key" ON "Task"("name", "version");
