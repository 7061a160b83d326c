import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PNG } from 'pngjs';
import { afterAll, describe, expect, it } from 'vitest';

// `tessera-client --check`, run as users run it: the built CLI in its own process.
const cli = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const folder = mkdtempSync(join(tmpdir(), 'tessera-check-'));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(folder, name);
  writeFileSync(path, text);
  return path;
}

/** A tabular task of 2 numeric columns and a categorical one; its model is not built by --check. */
const task = {
  schemaVersion: 1,
  name: 'ward-risk',
  input: {
    kind: 'tabular',
    label: 'risk',
    columns: [
      { name: 'age', type: 'numeric', standardize: { mean: 50, std: 15 } },
      { name: 'pulse', type: 'numeric', standardize: 'federated' },
      { name: 'ward', type: 'categorical', categories: ['a', 'b'] },
    ],
  },
  output: { kind: 'multiclass', classes: ['low', 'mid', 'high'] },
  loss: 'softmax-cross-entropy',
  metrics: ['accuracy'],
  model: { topology: { class_name: 'Sequential', config: { name: 's', layers: [] } } },
};
const taskFile = file('task.json', JSON.stringify(task));

function check(...args: string[]) {
  const run = spawnSync(process.execPath, [cli, '--check', ...args], { encoding: 'utf8' });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

describe('tessera-client --check', () => {
  it('says the rows, the split and the labels of data that fits, and exits 0 without connecting', () => {
    const rows = Array.from(
      { length: 10 },
      (_, i) =>
        `${['low', 'mid', 'high'][i % 3]},${i % 2 ? 'a' : 'b'},${70 + i},note ${i},${30 + i}`,
    );
    const data = file('fits.csv', `risk,ward,pulse,note,age\n${rows.join('\n')}\n`);
    const result = check('--task-file', taskFile, '--data', data, '--holdout', '0.2');
    expect(result.stderr).toBe('');
    expect(result.stdout.split('\n')).toEqual([
      "tessera-client: task ward-risk: tabular, 3 columns and label 'risk' -> multiclass (low, mid, high)",
      `tessera-client: ${data}: 8 training, 2 held-out; 3 classes seen of 3 (low 4, mid 3, high 3)`,
      "tessera-client: 'pulse': constants from the federated statistics round (this file's rows fit; the round computes them)",
      'tessera-client: the data fits the task',
      '',
    ]);
    expect(result.status).toBe(0);
  });

  it('names the file, line and column of what does not fit, and exits 2', () => {
    const missing = file('missing.csv', 'risk,ward,age\nlow,a,30\n');
    const result = check('--task-file', taskFile, '--data', missing);
    expect(result.status).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(
      `${missing}: 1 rows; column 'pulse' missing (the header has 3 columns: risk, ward, age)`,
    );
    const badValue = file(
      'bad.csv',
      'risk,ward,pulse,age\nlow,a,70,30\nsevere,a,71,31\nlow,c,72,32\n',
    );
    const bad = check('--task-file', taskFile, '--data', badValue);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain(`${badValue}: 3 rows; line 3: column 'risk': `);
    expect(bad.stderr).toContain('(and 1 more bad row)');
  });

  it('refuses a task file that is not a task, and a data file that does not exist (exit 2)', () => {
    const notATask = file('not-a-task.json', JSON.stringify({ ...task, loss: 'hinge' }));
    const result = check('--task-file', notATask, '--data', taskFile);
    expect(result.status).toBe(2);
    expect(result.stderr).toContain(`--task-file ${notATask}: not a task definition: `);
    expect(result.stderr).toContain('loss');
    const absent = check('--task-file', taskFile, '--data', join(folder, 'absent.csv'));
    expect(absent.status).toBe(2);
    expect(absent.stderr).toContain('absent.csv cannot be read');
  });

  it('checks a folder of class sub-folders against an image task: images decoded, labels counted', () => {
    const images = join(folder, 'images');
    for (const name of ['yes', 'no', 'maybe']) mkdirSync(join(images, name), { recursive: true });
    const png = PNG.sync.write(new PNG({ width: 3, height: 3 }));
    for (let i = 0; i < 3; i++) writeFileSync(join(images, 'yes', `${i}.png`), png);
    writeFileSync(join(images, 'no', 'a.png'), png);
    const imageTask = {
      ...task,
      name: 'scans',
      input: { kind: 'image', height: 2, width: 2, channels: 1, valueRange: { min: 0, max: 255 } },
      output: { kind: 'binary', classes: ['no', 'yes'] },
      loss: 'sigmoid-binary-cross-entropy',
    };
    const imageTaskFile = file('scans.json', JSON.stringify(imageTask));
    // 'maybe' holds no image: no class of its own, nothing to refuse.
    const fits = check('--task-file', imageTaskFile, '--data', images, '--holdout', '0.25');
    expect(fits.stdout).toContain(
      `tessera-client: ${images}: 3 training, 1 held-out images; 2 classes seen of 2 (no 1, yes 3)`,
    );
    expect(fits.status).toBe(0);
    writeFileSync(join(images, 'maybe', 'm.png'), png);
    const misfit = check('--task-file', imageTaskFile, '--data', images);
    expect(misfit.status).toBe(2);
    expect(misfit.stderr).toContain(
      `${images}: folder 'maybe' is not a class of task 'scans' ('no', 'yes')`,
    );
  });

  it('needs both --task-file and --data, and --task-file only goes with --check', () => {
    expect(check('--data', taskFile)).toMatchObject({
      status: 2,
      stderr: expect.stringContaining('--check needs --task-file TASK.json'),
    });
    expect(check('--task-file', taskFile)).toMatchObject({
      status: 2,
      stderr: expect.stringContaining('--check needs --data FILE'),
    });
  });
});
