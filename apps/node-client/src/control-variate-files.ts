import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type ControlVariateStore,
  MemoryControlVariates,
  type StagedControl,
} from '@tessera/client';

/**
 * SCAFFOLD's c_i of each run in a file of the client's state directory (`--state-dir`), so a
 * restarted client process continues the run with the control variate it had: raw
 * little-endian float32, 4 bytes per parameter, named after the run. The c_i⁺ of the last
 * update, not yet adopted (the client adopts it when the run's next round arrives), is kept
 * beside it (`.staged`: the round as a little-endian uint32, then c_i⁺), so a client restarted
 * between rounds still adopts it. Each file is written to a temporary file and renamed, so a
 * crash mid-write leaves the previous one, never half of one. A file of another length than
 * the model (not this run's model) is ignored: c_i starts from zero.
 */
export class FileControlVariates implements ControlVariateStore {
  readonly where: string;
  private readonly memory = new MemoryControlVariates();

  constructor(private readonly directory: string) {
    this.where = `in ${directory} (one file per run)`;
  }

  /** The file of `runId`; the id is encoded so that no run id names a path outside the directory. */
  fileOf(runId: string): string {
    return join(this.directory, `scaffold-c-${encodeURIComponent(runId)}.f32`);
  }

  /** Where the staged c_i⁺ of `runId` is kept. */
  stagedFileOf(runId: string): string {
    return `${this.fileOf(runId)}.staged`;
  }

  async load(runId: string, paramCount: number): Promise<Float32Array | null> {
    const inMemory = await this.memory.load(runId, paramCount);
    if (inMemory !== null) return inMemory;
    const bytes = await readIfPresent(this.fileOf(runId));
    if (bytes === null || bytes.byteLength !== paramCount * 4) return null;
    const values = float32sOf(bytes, 0, paramCount);
    await this.memory.save(runId, values);
    return values;
  }

  async save(runId: string, values: Float32Array): Promise<void> {
    await this.writeWhole(this.fileOf(runId), bytesOf(values, 0));
    await this.memory.save(runId, values);
  }

  async stage(runId: string, staged: StagedControl | null): Promise<void> {
    const file = this.stagedFileOf(runId);
    if (staged === null) {
      await rm(file, { force: true });
      return;
    }
    const bytes = bytesOf(staged.values, 4);
    new DataView(bytes.buffer).setUint32(0, staged.round, true);
    await this.writeWhole(file, bytes);
  }

  async staged(runId: string, paramCount: number): Promise<StagedControl | null> {
    const bytes = await readIfPresent(this.stagedFileOf(runId));
    if (bytes === null || bytes.byteLength !== 4 + paramCount * 4) return null;
    const round = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
    return { round, values: float32sOf(bytes, 4, paramCount) };
  }

  private async writeWhole(file: string, bytes: Uint8Array): Promise<void> {
    await mkdir(this.directory, { recursive: true, mode: 0o700 });
    const temporary = `${file}.${process.pid}.tmp`;
    await writeFile(temporary, bytes, { mode: 0o600 });
    await rename(temporary, file);
  }
}

async function readIfPresent(file: string): Promise<Buffer | null> {
  try {
    return await readFile(file);
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return null;
    throw error;
  }
}

/** `values` as little-endian float32 after `offset` bytes left for a header. */
function bytesOf(values: Float32Array, offset: number): Uint8Array {
  const bytes = new Uint8Array(offset + values.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < values.length; i++)
    view.setFloat32(offset + i * 4, values[i] as number, true);
  return bytes;
}

function float32sOf(bytes: Buffer, offset: number, count: number): Float32Array {
  const values = new Float32Array(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < count; i++) values[i] = view.getFloat32(offset + i * 4, true);
  return values;
}
