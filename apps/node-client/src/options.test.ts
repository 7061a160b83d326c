import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode } from '@tessera/protocol';
import { afterAll, describe, expect, it } from 'vitest';
import { chooseTokenSource, parseCommandLine, readToken } from './options.js';

const folder = mkdtempSync(join(tmpdir(), 'tessera-options-'));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

function tokenFile(name: string, text: string, mode: number): string {
  const path = join(folder, name);
  writeFileSync(path, text);
  chmodSync(path, mode);
  return path;
}

const refusal = (field: string, message: string | RegExp) =>
  expect.objectContaining({
    code: ErrorCode.INVALID_ARGUMENT,
    data: { field },
    message: typeof message === 'string' ? message : expect.stringMatching(message),
  });

describe('the client token', () => {
  it('comes from exactly one of --token, --token-file and TESSERA_TOKEN', () => {
    expect(chooseTokenSource('tsr_a', undefined, undefined)).toEqual({
      kind: '--token',
      token: 'tsr_a',
    });
    expect(chooseTokenSource(undefined, undefined, ' tsr_b\n')).toEqual({
      kind: 'TESSERA_TOKEN',
      token: 'tsr_b',
    });
    expect(chooseTokenSource(undefined, '/run/secrets/t', '')).toEqual({
      kind: '--token-file',
      path: '/run/secrets/t',
    });
  });

  it('is refused with a clear message when none or several are given', () => {
    expect(() => chooseTokenSource(undefined, undefined, undefined)).toThrow(
      refusal(
        'token',
        'no client token: pass --token-file FILE (a file holding the token your admin issued) or set TESSERA_TOKEN',
      ),
    );
    expect(() => chooseTokenSource('tsr_a', undefined, 'tsr_b')).toThrow(
      refusal(
        'token',
        'the client token is given 2 ways (--token, TESSERA_TOKEN); give exactly one',
      ),
    );
    expect(() => chooseTokenSource('tsr_a', 'file', 'tsr_b')).toThrow(
      refusal('token', /given 3 ways \(--token, --token-file, TESSERA_TOKEN\)/),
    );
    expect(() => chooseTokenSource(' ', undefined, undefined)).toThrow(
      refusal('--token', '--token is empty'),
    );
  });

  it('is the first line of its file, trimmed; a private file gives no warning', () => {
    const path = tokenFile('private', '  tsr_secret \r\nsecond line\n', 0o600);
    expect(readToken({ kind: '--token-file', path })).toEqual({ token: 'tsr_secret' });
  });

  it('warns (and still reads) where other users can read the file', () => {
    const path = tokenFile('shared', 'tsr_shared\n', 0o644);
    expect(readToken({ kind: '--token-file', path })).toEqual({
      token: 'tsr_shared',
      warning: `--token-file ${path} can be read by other users (mode 0644); chmod 600 ${path}`,
    });
  });

  it('refuses a missing file or an empty first line, naming the file', () => {
    const missing = join(folder, 'absent');
    expect(() => readToken({ kind: '--token-file', path: missing })).toThrow(
      refusal('--token-file', `--token-file ${missing}: cannot read it (no such file)`),
    );
    const empty = tokenFile('empty', '\ntsr_on_line_2\n', 0o600);
    expect(() => readToken({ kind: '--token-file', path: empty })).toThrow(
      refusal(
        '--token-file',
        `--token-file ${empty}: its first line is empty; it should hold the client token`,
      ),
    );
  });
});

describe('parseCommandLine', () => {
  const base = ['--coordinator', 'http://coordinator:4000', '--token', 'tsr_a'];

  it('reads the options into settings', () => {
    expect(parseCommandLine([...base, '--csv', 'd.csv', '--scale', '255'], {}, false)).toEqual({
      coordinatorUrl: 'http://coordinator:4000',
      tokenSource: { kind: '--token', token: 'tsr_a' },
      data: {
        csv: 'd.csv',
        featureScale: 255,
        partition: 'iid',
        partitionSeed: 42,
        holdoutFraction: 0.1,
      },
      backend: 'auto',
      threads: undefined,
      workers: 1,
      progress: 'lines',
    });
    expect(parseCommandLine(['--help'], {}, true)).toBe('help');
  });

  it.each([
    [['--csv', 'd.csv', '--scale', '0'], '--scale', '--scale must be a positive number, got "0"'],
    [
      ['--mnist', '0/2', '--scale', '255'],
      '--scale',
      '--scale applies to --csv data only (MNIST is scaled already)',
    ],
    [['--csv', 'd.csv', '--holdout', 'x'], '--holdout', /--holdout must be a fraction in \[0, 1\)/],
    [['--csv', 'd.csv', '--max-examples', '0'], '--max-examples', /at least 1, got "0"/],
    [['--csv', 'd.csv', '--backend', 'gpu'], '--backend', /--backend must be one of auto, /],
    [['--csv', 'd.csv', '--progress', 'dots'], '--progress', /bars, lines, none, got "dots"/],
    [['--csv', 'd.csv', '--workers', 'two'], '--workers', /--workers must be an integer/],
    [['--csv', 'd.csv', '--tokn', 'x'], 'arguments', /Unknown option '--tokn'/],
  ])('refuses %j, naming the option', (extra, field, message) => {
    expect(() => parseCommandLine([...base, ...extra], {}, false)).toThrow(refusal(field, message));
  });

  it('reads --data, and --check with --task-file (which needs neither coordinator nor token)', () => {
    expect(
      parseCommandLine([...base, '--data', 'ward.csv', '--holdout', '0.2'], {}, false),
    ).toMatchObject({
      data: { data: 'ward.csv', holdoutFraction: 0.2, partitionSeed: 42 },
    });
    expect(
      parseCommandLine(['--check', '--task-file', 't.json', '--data', 'w.tsv'], {}, false),
    ).toEqual({
      check: {
        taskFile: 't.json',
        data: { data: 'w.tsv', partition: 'iid', partitionSeed: 42, holdoutFraction: 0.1 },
      },
    });
  });

  it.each([
    [
      ['--mnist', '0/2', '--data', 'w.csv'],
      '--data',
      'give one data source, not --mnist and --data',
    ],
    [['--csv', 'd.csv', '--data', 'w.csv'], '--data', 'give one data source, not --csv and --data'],
    [['--data', 'w.csv', '--scale', '255'], '--scale', /--scale applies to --csv data only/],
    [['--data', 'w.csv', '--task-file', 't.json'], '--task-file', /--task-file goes with --check/],
  ])('refuses %j with --data, naming the option', (extra, field, message) => {
    expect(() => parseCommandLine([...base, ...extra], {}, false)).toThrow(refusal(field, message));
  });

  it('needs a coordinator address it can use', () => {
    expect(() => parseCommandLine(['--token', 't', '--csv', 'd'], {}, false)).toThrow(
      refusal('--coordinator', /^--coordinator URL is required/),
    );
    expect(() =>
      parseCommandLine(
        ['--token', 't', '--csv', 'd'],
        { TESSERA_COORDINATOR: 'coordinator:4000' },
        false,
      ),
    ).toThrow(refusal('--coordinator', /http:\/\/ or https:\/\/ address, got "coordinator:4000"/));
  });
});
