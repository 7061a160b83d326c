// Builds the optional native addon with node-gyp. The addon needs a C++ compiler and
// OpenBLAS (Debian: `apt install g++ libopenblas-dev pkg-config`), and uses oneDNN for the
// training loop's convolutions where its version 2 headers are installed (Debian bookworm:
// libdnnl-dev; binding.gyp looks for them, im2col + OpenBLAS otherwise); where either of the first two is missing
// the build is skipped with the reason written to build/UNAVAILABLE.txt, which
// @tessera/ml reports when the 'openblas' backend is asked for. TESSERA_REQUIRE_NATIVE=1
// turns a failed build into a failed build step (CI, where the addon must be tested).
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const marker = path.join(root, 'build', 'UNAVAILABLE.txt');
const addon = path.join(root, 'build', 'Release', 'tessera_native.node');
rmSync(marker, { force: true });

function unavailable(reason) {
  if (process.env.TESSERA_REQUIRE_NATIVE === '1') {
    console.error(`@tessera/ml-native: ${reason}`);
    process.exit(1);
  }
  console.warn(`@tessera/ml-native: skipped (${reason}); training uses WebAssembly only`);
  // An addon left from an earlier build would no longer match this machine.
  rmSync(addon, { force: true });
  mkdirSync(path.dirname(marker), { recursive: true });
  writeFileSync(marker, `${reason}\n`);
  process.exit(0);
}

const pkgConfig = spawnSync('pkg-config', ['--exists', 'openblas']);
if (pkgConfig.error !== undefined || pkgConfig.status !== 0) {
  unavailable('OpenBLAS not found by pkg-config (Debian: apt install libopenblas-dev pkg-config)');
}

// npm runs this script with its own node-gyp in npm_config_node_gyp, and its settings
// (the Node headers' location among them) in the environment: build through npm, e.g.
// `npm run install -w @tessera/ml-native` after installing OpenBLAS.
const nodeGyp = process.env.npm_config_node_gyp;
if (nodeGyp === undefined) {
  console.error('@tessera/ml-native: run this through npm: npm run install -w @tessera/ml-native');
  process.exit(1);
}
const [command, args] = [process.execPath, [nodeGyp, 'rebuild']];
const result = spawnSync(command, args, { cwd: root, encoding: 'utf8' });
if (result.error !== undefined || result.status !== 0) {
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}`
    .trim()
    .split('\n')
    .slice(-8)
    .join('\n');
  unavailable(`node-gyp rebuild failed: ${result.error?.message ?? output}`);
}
