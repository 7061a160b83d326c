import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ControlVariateStore, MemoryControlVariates } from '@tessera/client';

/**
 * SCAFFOLD's c_i of each run in a file of the client's state directory (`--state-dir`), so a
 * restarted client process continues the run with the control variate it had: raw
 * little-endian float32, 4 bytes per parameter, named after the run. Written to a temporary
 * file and renamed, so a crash mid-write leaves the previous c_i, never half of one. A file of
 * another length than the model (not this run's model) is ignored: c_i starts from zero.
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

  async load(runId: string, paramCount: number): Promise<Float32Array | null> {
    const inMemory = await this.memory.load(runId, paramCount);
    if (inMemory !== null) return inMemory;
    let bytes: Buffer;
    try {
      bytes = await readFile(this.fileOf(runId));
    } catch (error) {
      if ((error as { code?: unknown }).code === 'ENOENT') return null;
      throw error;
    }
    if (bytes.byteLength !== paramCount * 4) return null;
    const values = new Float32Array(paramCount);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < paramCount; i++) values[i] = view.getFloat32(i * 4, true);
    await this.memory.save(runId, values);
    return values;
  }

  async save(runId: string, values: Float32Array): Promise<void> {
    const bytes = new Uint8Array(values.length * 4);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i] as number, true);
    await mkdir(this.directory, { recursive: true, mode: 0o700 });
    const file = this.fileOf(runId);
    const temporary = `${file}.${process.pid}.tmp`;
    await writeFile(temporary, bytes, { mode: 0o600 });
    await rename(temporary, file);
    await this.memory.save(runId, values);
  }
}
