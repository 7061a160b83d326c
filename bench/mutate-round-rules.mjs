#!/usr/bin/env node
/**
 * Mutation check of the round rules (issue 13, item 4): each mutant removes or inverts one rule
 * of the round engine (engine.ts, round-state.ts, sampling.ts, registry.ts) by a textual patch,
 * the engine's unit tests run against it, and the mutant is "killed" when a test fails (or the
 * run hangs past its limit) and "survived" when every test still passes.
 *
 *   node bench/mutate-round-rules.mjs                 every mutant, one at a time
 *   node bench/mutate-round-rules.mjs --only M03,M17  just those
 *   node bench/mutate-round-rules.mjs --list          the mutants, without running anything
 *   node bench/mutate-round-rules.mjs --check         only that every patch still applies: each
 *                                                     `find` occurs exactly once (exit 1 if not)
 *
 * The source file is patched in place and written back byte for byte after each run (also on
 * Ctrl-C), so run it in a clean checkout: it refuses to start when a mutated file has
 * uncommitted changes. Runs are sequential and stop at the first failing test (--bail=1): the
 * machine is shared, and one failure is all a verdict needs. Results go to stdout as a table
 * and to bench/results/mutate-round-rules.json.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const src = 'apps/coordinator/src';
/**
 * The three files, in two stages: the quick ones first, and the engine's own (about 90 s) only
 * for a mutant they did not kill. A verdict is the same as one run of all three would give.
 */
const STAGES = [
  [`${src}/round-rules.test.ts`, `${src}/round-state.test.ts`],
  [`${src}/engine.test.ts`],
];
/** The statistics round's own tests: its mutants run these instead (one stage). */
const STATISTICS_STAGES = [[`${src}/engine-statistics.test.ts`]];
const TEST_FILES = STAGES.flat();
/** A mutant whose tests neither pass nor fail by then hangs the engine: counted as killed. */
const RUN_LIMIT_MS = 420_000;

const ENGINE = `${src}/engine.ts`;
const STATE = `${src}/round-state.ts`;
const SAMPLING = `${src}/sampling.ts`;
const REGISTRY = `${src}/registry.ts`;

/**
 * id, the rule it breaks, and the patch: `find` must occur exactly once in `file` (so a mutant
 * never silently turns into a no-op when the code moves on), and is replaced by `replace`.
 * `stages`, where given, are the test files that judge it instead of STAGES.
 */
const MUTANTS = [
  // ---- who is sampled ------------------------------------------------------------------
  {
    id: 'M01',
    rule: "sampling: only the run's federation (idle() ignores the federation)",
    file: REGISTRY,
    find: '.filter((s) => s.federationId === federationId && s.task === null)',
    replace: '.filter((s) => s.task === null)',
  },
  {
    id: 'M02',
    rule: 'sampling: only idle clients (idle() includes clients busy in a round)',
    file: REGISTRY,
    find: '.filter((s) => s.federationId === federationId && s.task === null)',
    replace: '.filter((s) => s.federationId === federationId)',
  },
  {
    id: 'M03',
    rule: 'sampling: clients backing off are not eligible (eligible() = idle())',
    file: REGISTRY,
    find: 'return this.idle(federationId).filter((id) => (this.backoffs.get(id)?.until ?? 0) <= now);',
    replace: 'return this.idle(federationId);',
  },
  {
    id: 'M04',
    rule: 'sampling: a back-off ends when its time has come (<= inverted to <)',
    file: REGISTRY,
    find: '(this.backoffs.get(id)?.until ?? 0) <= now',
    replace: '(this.backoffs.get(id)?.until ?? 0) < now',
  },
  {
    id: 'M05',
    rule: 'sampling: a round samples from the eligible, not merely idle, clients',
    file: ENGINE,
    find: 'const eligible = registry.eligible(this.run.federationId);',
    replace: 'const eligible = registry.idle(this.run.federationId);',
  },
  {
    id: 'M06',
    rule: 'sampling: selected clients are marked busy (claimed) for the round',
    file: ENGINE,
    find: "const selected = await this.claimClients(drawn, { runId: this.runId, round, phase: 'train' });",
    replace: 'const selected = [...drawn];',
  },
  {
    id: 'M07',
    rule: 'clientsPerRound: a fixed number per round (ignored)',
    file: SAMPLING,
    find: 'policy.clientsPerRound ??\n',
    replace: '',
  },
  {
    id: 'M08',
    rule: 'fractionFit: ceil(C x available) (ceil inverted to floor)',
    file: SAMPLING,
    find: 'Math.ceil(policy.fractionFit * available)',
    replace: 'Math.floor(policy.fractionFit * available)',
  },
  {
    id: 'M09',
    rule: 'minClients: the sample is raised to at least minClients',
    file: SAMPLING,
    find: 'Math.max(wanted, policy.minClients)',
    replace: 'wanted',
  },
  {
    id: 'M10',
    rule: 'sampling: never more than available',
    file: SAMPLING,
    find: 'Math.min(available, Math.max(wanted, policy.minClients))',
    replace: 'Math.max(wanted, policy.minClients)',
  },
  {
    id: 'M11',
    rule: 'minClients to start: no round with fewer than minClients available',
    file: SAMPLING,
    find: 'return size >= policy.minClients ? size : 0;',
    replace: 'return size;',
  },
  {
    id: 'M12',
    rule: 'minClients must be at least 1 (INVALID_ARGUMENT, field minClients)',
    file: SAMPLING,
    find: 'if (policy.minClients < 1) {',
    replace: 'if (false) {',
  },
  {
    id: 'M13',
    rule: 'sampling is independent of connection order (candidates sorted first)',
    file: SAMPLING,
    find: 'const pool = [...available].sort();',
    replace: 'const pool = [...available];',
  },
  {
    id: 'M14',
    rule: 'awaitClients waits for eligible (not merely idle) clients',
    file: ENGINE,
    find: 'const idle = registry.eligible(this.run.federationId).length;',
    replace: 'const idle = registry.idle(this.run.federationId).length;',
  },
  // ---- seeds ---------------------------------------------------------------------------
  {
    id: 'M15',
    rule: 'seeds: a fresh sample per attempt (sample seed ignores the attempt)',
    file: ENGINE,
    find: "const rng = createRng(this.seed('sample', round, attempt));",
    replace: "const rng = createRng(this.seed('sample', round, 1));",
  },
  {
    id: 'M16',
    rule: 'seeds: a sample seed per round (always round 1)',
    file: ENGINE,
    find: "const rng = createRng(this.seed('sample', round, attempt));",
    replace: "const rng = createRng(this.seed('sample', 1, attempt));",
  },
  {
    id: 'M17',
    rule: 'seeds: the shuffle seed is the same for every attempt of a round',
    file: ENGINE,
    find: "config: trainConfigFor(config, this.seed('shuffle', round, 0)),",
    replace: "config: trainConfigFor(config, this.seed('shuffle', round, attempt)),",
  },
  {
    id: 'M18',
    rule: 'seeds: a shuffle seed per round (always round 1)',
    file: ENGINE,
    find: "config: trainConfigFor(config, this.seed('shuffle', round, 0)),",
    replace: "config: trainConfigFor(config, this.seed('shuffle', 1, 0)),",
  },
  // ---- closing and committing ----------------------------------------------------------
  {
    id: 'M19',
    rule: 'minClients to commit: fewer accepted updates is too few',
    file: ENGINE,
    // Outside Poisson sampling (DP), which commits whatever arrived: `enough` is then this test.
    find: '|| numUpdates >= config.minClients;',
    replace: '|| true;',
  },
  {
    id: 'M20',
    rule: 'a round with no aggregate (weights null) is too few',
    file: ENGINE,
    // Equivalent today (it survives; no test can kill it): outside Poisson sampling weights are
    // null only with no update, which `enough` already refuses (minClients >= 1), and under
    // Poisson sampling DP-FedAvg releases a noised step even for an empty round. The guard
    // stays for a strategy that returns no aggregate from updates.
    find: "if (result.weights === null || !enough) return 'too-few';",
    replace: "if (!enough) return 'too-few';",
  },
  {
    id: 'M21',
    rule: 'deadline: the round closes when its deadline passes',
    file: ENGINE,
    find: 'while (!state.allAnswered && this.stopReason === null && Date.now() < deadline) {',
    replace: 'while (!state.allAnswered && this.stopReason === null) {',
  },
  {
    id: 'M22',
    rule: 'the round closes as soon as every selected client answered (not at the deadline)',
    file: ENGINE,
    find: 'while (!state.allAnswered && this.stopReason === null && Date.now() < deadline) {',
    replace: 'while (this.stopReason === null && Date.now() < deadline) {',
  },
  {
    id: 'M23',
    rule: 'deadline: the evaluation closes at its own deadline (none)',
    file: ENGINE,
    // The statistics round sets its deadline the same way: the evaluation's is the one after
    // `this.evaluation = ...`.
    find: '      this.evaluation = { state, replies: [] };\n      const deadline = Date.now() + this.run.config.roundDeadlineMs;',
    replace:
      '      this.evaluation = { state, replies: [] };\n      const deadline = Number.POSITIVE_INFINITY;',
  },
  {
    id: 'M24',
    rule: 'retry: too few updates retries the round with a new sample (no retry)',
    file: ENGINE,
    // The statistics round has a loop of its own: the training round's starts its phase clock.
    find: '    this.roundClock = new PhaseClock();\n    for (let attempt = 1; attempt <= this.maxRoundAttempts; attempt++) {',
    replace:
      '    this.roundClock = new PhaseClock();\n    for (let attempt = 1; attempt <= 1; attempt++) {',
  },
  {
    id: 'M25',
    rule: 'maxRoundAttempts: exactly that many attempts (one fewer)',
    file: ENGINE,
    find: '    this.roundClock = new PhaseClock();\n    for (let attempt = 1; attempt <= this.maxRoundAttempts; attempt++) {',
    replace:
      '    this.roundClock = new PhaseClock();\n    for (let attempt = 1; attempt < this.maxRoundAttempts; attempt++) {',
  },
  {
    id: 'M26',
    rule: 'maxRoundAttempts: 5 by default (docs/protocol.md)',
    file: ENGINE,
    find: 'this.maxRoundAttempts = deps.maxRoundAttempts ?? 5;',
    replace: 'this.maxRoundAttempts = deps.maxRoundAttempts ?? 6;',
  },
  {
    id: 'M27',
    rule: 'retry: too few updates is retried, not committed (too-few treated as done)',
    file: ENGINE,
    find: "if (outcome !== 'too-few') return outcome;",
    replace: 'return outcome;',
  },
  // ---- replies -------------------------------------------------------------------------
  {
    id: 'M28',
    rule: 'duplicate update -> DUPLICATE_UPDATE',
    file: STATE,
    find: "if (outcome !== 'pending') {",
    replace: 'if (false) {',
  },
  {
    id: 'M29',
    rule: 'reply from a client not selected -> NOT_SELECTED',
    file: STATE,
    find: "if (outcome === undefined || outcome === 'dropped') {",
    replace: "if (outcome === 'dropped') {",
  },
  {
    id: 'M30',
    rule: 'reply from a client that dropped -> NOT_SELECTED',
    file: STATE,
    find: "if (outcome === undefined || outcome === 'dropped') {",
    replace: 'if (outcome === undefined) {',
  },
  {
    id: 'M31',
    rule: 'late reply (round closed) -> WRONG_ROUND',
    file: STATE,
    find: 'if (round !== this.round || this.closed) {',
    replace: 'if (round !== this.round) {',
  },
  {
    id: 'M32',
    rule: 'reply for another round -> WRONG_ROUND',
    file: STATE,
    find: 'if (round !== this.round || this.closed) {',
    replace: 'if (this.closed) {',
  },
  {
    id: 'M33',
    rule: 'reply for another run -> WRONG_RUN',
    file: STATE,
    find: 'if (runId !== this.runId) {',
    replace: 'if (false) {',
  },
  {
    id: 'M34',
    rule: 'late update (no training open) -> WRONG_ROUND, not ignored',
    file: ENGINE,
    find: 'handleUpdate(clientId: string, reply: TrainReply): void {\n    const open = this.training;\n    if (!open)\n      throw',
    replace:
      'handleUpdate(clientId: string, reply: TrainReply): void {\n    const open = this.training;\n    if (!open) return;\n    if (false)\n      throw',
  },
  {
    id: 'M35',
    rule: 'late evaluation reply (no evaluation open) -> WRONG_ROUND, not ignored',
    file: ENGINE,
    find: 'const open = this.evaluation;\n    if (!open)\n      throw',
    replace: 'const open = this.evaluation;\n    if (!open) return;\n    if (false)\n      throw',
  },
  {
    id: 'M36',
    rule: 'a failed reply takes the client out of the round',
    file: ENGINE,
    find: "      open.state.record(clientId, 'failed');\n      open.reasons.set(",
    replace: '      open.reasons.set(',
  },
  {
    id: 'M37',
    rule: 'a refused (bad) update takes the client out of the round',
    file: ENGINE,
    // The training round's refusal also keeps the reason (the statistics round's does not).
    find: "        open.state.record(clientId, 'rejected');\n        open.reasons.set(clientId, {",
    replace: '        open.reasons.set(clientId, {',
  },
  {
    id: 'M38',
    rule: 'a refused update frees the client at once',
    file: ENGINE,
    find: '        registry.release(clientId, this.runId);\n        this.wakeup.notify();\n        throw error;',
    replace: '        this.wakeup.notify();\n        throw error;',
  },
  {
    id: 'M39',
    rule: 'an answered client is free again while the round is open',
    file: ENGINE,
    find: '        open.digests.set(clientId, digest);\n      }\n    }\n    registry.release(clientId, this.runId);',
    replace: '        open.digests.set(clientId, digest);\n      }\n    }',
  },
  {
    id: 'M40',
    rule: 'the round record keeps a drop after an accepted update as an update (drop guard)',
    file: STATE,
    find: "    if (this.outcomes.get(clientId) !== 'pending') return false;\n    this.outcomes.set(clientId, 'dropped');",
    replace: "    this.outcomes.set(clientId, 'dropped');",
  },
  // ---- drop-outs and time-outs ---------------------------------------------------------
  {
    id: 'M41',
    rule: 'a disconnect drops the client from the open training round',
    file: ENGINE,
    find: '      this.training?.state.drop(clientId) ||\n',
    replace: '',
  },
  {
    id: 'M42',
    rule: 'a disconnect drops the client from the open evaluation',
    file: ENGINE,
    find: '      this.training?.state.drop(clientId) ||\n      this.evaluation?.state.drop(clientId);',
    replace: '      this.training?.state.drop(clientId);',
  },
  {
    id: 'M43',
    rule: 'timeout back-off: a client silent past the deadline backs off',
    file: ENGINE,
    find: 'for (const clientId of late) this.deps.registry.timedOut(clientId);',
    // Not empty: the statement is the body of an if without braces.
    replace: 'for (const clientId of late) void clientId;',
  },
  {
    id: 'M44',
    rule: 'timeout back-off: not after a stop (not the client fault)',
    file: ENGINE,
    find: '    if (this.stopReason === null)\n      for (const clientId of late)',
    replace: '    for (const clientId of late)',
  },
  {
    id: 'M45',
    rule: 'timeout back-off doubles with each timeout in a row',
    file: REGISTRY,
    find: 'baseMs * 2 ** Math.min(timeouts - 1, 52)',
    replace: 'baseMs',
  },
  {
    id: 'M46',
    rule: 'timeout back-off is capped at maxMs',
    file: REGISTRY,
    find: 'Math.min(maxMs, baseMs * 2 ** Math.min(timeouts - 1, 52))',
    replace: 'baseMs * 2 ** Math.min(timeouts - 1, 52)',
  },
  {
    id: 'M47',
    rule: 'any frame ends a back-off (touch)',
    file: REGISTRY,
    find: "if (this.backoffs.delete(clientId)) this.emit('change');",
    replace: '',
  },
  {
    id: 'M48',
    rule: 'clients still pending are told round-closed',
    file: ENGINE,
    find: 'this.deps.transport.sendRoundClosed(late, { runId: this.runId, round: state.round, reason });',
    replace: '',
  },
  {
    id: 'M49',
    rule: 'closing a round frees every selected client',
    file: ENGINE,
    find: 'for (const clientId of state.selected) this.deps.registry.release(clientId, this.runId);',
    replace: '',
  },
  {
    id: 'M50',
    rule: "release frees a client only from this run's work",
    file: REGISTRY,
    find: 'if (session?.task?.runId !== runId) return;',
    replace: 'if (!session?.task) return;',
  },
  // ---- stop and pause ------------------------------------------------------------------
  {
    id: 'M51',
    rule: 'stop: an open round is closed without a commit',
    file: ENGINE,
    // The statistics round checks the same after its close: the training round's is the one
    // after its phase clock's lap.
    find: "    this.roundClock?.lap('training');\n    if (this.stopReason !== null) return 'stopped';",
    replace: "    this.roundClock?.lap('training');",
  },
  {
    id: 'M52',
    rule: 'stop: the loop ends (a stopped attempt is not a round)',
    file: ENGINE,
    find: "if (outcome === 'stopped') return null;",
    replace: '',
  },
  {
    id: 'M53',
    rule: 'pause ends the run as paused, not completed',
    file: ENGINE,
    find: "this.stopReason === 'stopped' || this.stopReason === 'paused'",
    replace: "this.stopReason === 'stopped'",
  },
  {
    id: 'M54',
    rule: 'stop between rounds: no new round once stopped (loop condition)',
    file: ENGINE,
    find: 'while (round < this.run.config.rounds && this.stopReason === null) {',
    replace: 'while (round < this.run.config.rounds) {',
  },
  {
    id: 'M55',
    rule: 'stop between rounds: awaitClients gives up once stopped',
    file: ENGINE,
    find: '    while (this.stopReason === null) {\n      const idle',
    replace: '    for (;;) {\n      const idle',
  },
  {
    id: 'M56',
    rule: 'the first stop reason wins (??=)',
    file: ENGINE,
    find: 'this.stopReason ??= reason;',
    replace: 'this.stopReason = reason;',
  },
  {
    id: 'M57',
    rule: 'stopped before the evaluation: no evaluation is started',
    file: ENGINE,
    find: 'holders.length > 0 && this.stopReason === null',
    replace: 'holders.length > 0',
  },
  // ---- evaluation ----------------------------------------------------------------------
  {
    id: 'M58',
    rule: 'evaluation: only eligible clients (not those backing off)',
    file: ENGINE,
    find: '    const holders = registry\n      .eligible(this.run.federationId)',
    replace: '    const holders = registry\n      .idle(this.run.federationId)',
  },
  {
    id: 'M59',
    rule: 'evaluation: clients without held-out data are not asked',
    file: ENGINE,
    find: '.filter((id) => registry.get(id)?.info.numHoldout !== 0);',
    replace: ';',
  },
  {
    id: 'M60',
    rule: 'evaluation: clients asked to evaluate are marked busy',
    file: ENGINE,
    find: "? await this.claimClients(holders, { runId: this.runId, round, phase: 'evaluate' })",
    replace: '? holders',
  },
  {
    id: 'M61',
    rule: 'evaluation: a failed evaluation reply takes the client out',
    file: ENGINE,
    find: "    } else {\n      open.state.record(clientId, 'failed');\n    }",
    replace: '    }',
  },
  {
    id: 'M62',
    rule: 'evaluation: a reply frees the client at once',
    file: ENGINE,
    find: "      open.state.record(clientId, 'failed');\n    }\n    this.deps.registry.release(clientId, this.runId);",
    replace: "      open.state.record(clientId, 'failed');\n    }",
  },
  {
    id: 'M63',
    rule: 'evaluation: replies are checked (run, round, selected, duplicate)',
    file: ENGINE,
    find: "    open.state.checkReply(clientId, reply.runId, reply.round);\n    if (reply.status === 'ok') {",
    replace: "    if (reply.status === 'ok') {",
  },
  {
    id: 'M64',
    rule: 'evaluation: a reply counts once (the ok reply is recorded as an answer)',
    file: ENGINE,
    find: "        accuracy: reply.accuracy,\n      });\n      open.state.record(clientId, 'updated');",
    replace: '        accuracy: reply.accuracy,\n      });',
  },
  // ---- strategy state and resume -------------------------------------------------------
  {
    id: 'M65',
    rule: 'strategy state committed with each round',
    file: ENGINE,
    find: 'strategyState: encodedState(this.strategy),',
    replace: 'strategyState: null,',
  },
  {
    id: 'M66',
    rule: 'resume restores the strategy state of the last checkpoint',
    file: ENGINE,
    find: '      this.restoreStrategy(latest.round, latest.strategyState);\n',
    replace: '',
  },
  {
    id: 'M67',
    rule: 'resume evaluates a round committed without its evaluation',
    file: ENGINE,
    find: "if ((await db.rounds.get(this.runId, number)).status !== 'committed') break;",
    replace: 'break;',
  },
  {
    id: 'M68',
    rule: 'the round record lists clients still pending at the deadline as dropped',
    file: ENGINE,
    find: "droppedClientIds: [...state.clientsWith('dropped'), ...state.clientsWith('pending')],",
    replace: "droppedClientIds: [...state.clientsWith('dropped')],",
  },
  // ---- the statistics round (before round 1; its own loop, deadline and replies) -------
  {
    id: 'M69',
    rule: 'statistics: only eligible clients are asked (not those backing off)',
    file: ENGINE,
    stages: STATISTICS_STAGES,
    find: 'await this.claimClients([...registry.eligible(this.run.federationId)].sort(), {',
    replace: 'await this.claimClients([...registry.idle(this.run.federationId)].sort(), {',
  },
  {
    id: 'M70',
    rule: 'statistics: the round closes at its deadline (none)',
    file: ENGINE,
    stages: STATISTICS_STAGES,
    find: '    const deadline = Date.now() + this.run.config.roundDeadlineMs;\n    transport.sendStatistics(',
    replace: '    const deadline = Number.POSITIVE_INFINITY;\n    transport.sendStatistics(',
  },
  {
    id: 'M71',
    rule: 'statistics: too few replies retries the round (no retry)',
    file: ENGINE,
    stages: STATISTICS_STAGES,
    find: 'for (let attempt = 1; attempt <= this.maxRoundAttempts; attempt++) {\n      if (!(await this.awaitClients(0)))',
    replace:
      'for (let attempt = 1; attempt <= 1; attempt++) {\n      if (!(await this.awaitClients(0)))',
  },
  {
    id: 'M72',
    rule: 'statistics: exactly maxRoundAttempts attempts (one fewer)',
    file: ENGINE,
    stages: STATISTICS_STAGES,
    find: 'for (let attempt = 1; attempt <= this.maxRoundAttempts; attempt++) {\n      if (!(await this.awaitClients(0)))',
    replace:
      'for (let attempt = 1; attempt < this.maxRoundAttempts; attempt++) {\n      if (!(await this.awaitClients(0)))',
  },
  {
    id: 'M73',
    rule: 'statistics: a refused reply takes the client out of the round',
    file: ENGINE,
    stages: STATISTICS_STAGES,
    find: "        open.state.record(clientId, 'rejected');\n        registry.release(clientId, this.runId);",
    replace: '        registry.release(clientId, this.runId);',
  },
  {
    id: 'M74',
    rule: 'statistics: a disconnect drops the client from the open statistics round',
    file: ENGINE,
    stages: STATISTICS_STAGES,
    find: '      this.statistics?.state.drop(clientId) ||\n',
    replace: '',
  },
  {
    id: 'M75',
    rule: 'statistics: a stopped statistics round resolves nothing',
    file: ENGINE,
    stages: STATISTICS_STAGES,
    find: "    if (this.stopReason !== null) return 'stopped';\n    return [...parts.keys()]",
    replace: '    return [...parts.keys()]',
  },
  // ---- evaluation beside the next round ----------------------------------------------------
  {
    id: 'M76',
    rule: 'central evaluation runs beside the next round (the loop does not wait for it)',
    file: ENGINE,
    find: 'if (this.deps.centralEvaluator === null) await this.awaitEvaluation(evaluating);',
    replace: 'await this.awaitEvaluation(evaluating);',
  },
  {
    id: 'M77',
    rule: 'a failed central evaluation fails the run before the next round commits',
    file: ENGINE,
    find: '    // writes another round.\n    this.throwIfEvaluationFailed();\n',
    replace: '    // writes another round.\n',
  },
  {
    id: 'M78',
    rule: 'resume evaluates the round before the last too, when it was left unevaluated',
    file: ENGINE,
    find: 'number >= Math.max(1, round - 1);',
    replace: 'number >= round;',
  },
  {
    id: 'M79',
    rule: 'a pause asked for during a round ends the run after that round',
    file: ENGINE,
    find: 'if (this.endAfter !== null) {',
    replace: 'if (false as boolean) {',
  },
  {
    id: 'M80',
    rule: 'one central evaluation at a time: round r + 1 waits for round r',
    file: ENGINE,
    find: '        await this.awaitEvaluation(evaluating);\n        this.throwIfEvaluationFailed();\n',
    replace: '',
  },
  {
    id: 'M81',
    rule: 'a drawn client whose claim another process won is left out of the round',
    file: ENGINE,
    find: 'const held = won.filter(',
    replace: 'const held = drawn.filter(() => true) || won.filter(',
  },
  {
    id: 'M82',
    rule: 'a drawn client that is no longer here with this task after the claim is left out',
    file: ENGINE,
    find: '    const held = won.filter((id) => registry.get(id)?.task?.runId === this.runId);\n',
    replace: '    const held = won;\n',
  },
];

function git(...args) {
  return spawnSync('git', args, { cwd: root, encoding: 'utf8' });
}

function parseArgs(argv) {
  const options = { only: null, list: false, check: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--list') options.list = true;
    else if (argv[i] === '--check') options.check = true;
    else if (argv[i] === '--only') options.only = new Set((argv[++i] ?? '').split(','));
    else throw new Error(`unknown argument ${argv[i]} (use --only M01,M02, --list or --check)`);
  }
  return options;
}

/** Every mutant whose `find` does not occur exactly once, as a line saying so. */
function stalePatches(mutants) {
  const stale = [];
  for (const mutant of mutants) {
    const text = readFileSync(join(root, mutant.file), 'utf8');
    const count = text.split(mutant.find).length - 1;
    if (count !== 1)
      stale.push(`${mutant.id}: its patch text occurs ${count} times in ${mutant.file}`);
  }
  return stale;
}

function checkPatches(mutants) {
  const stale = stalePatches(mutants);
  if (stale.length > 0) throw new Error(`${stale.join('\n')}\nupdate these mutants`);
}

/** Runs the tests once; resolves with the verdict and the first failing tests' names. */
function runTests(testFiles, reportFile) {
  return new Promise((resolvePromise) => {
    const started = Date.now();
    const child = spawn(
      'npx',
      ['vitest', 'run', ...testFiles, '--bail=1', '--reporter=json', `--outputFile=${reportFile}`],
      { cwd: root, stdio: ['ignore', 'ignore', 'ignore'], detached: true },
    );
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      // The whole group: vitest's forks as well.
      process.kill(-child.pid, 'SIGKILL');
    }, RUN_LIMIT_MS);
    child.on('exit', (code) => {
      clearTimeout(timer);
      const seconds = Math.round((Date.now() - started) / 1000);
      if (timedOut) {
        resolvePromise({
          verdict: 'killed',
          by: [`(no verdict in ${RUN_LIMIT_MS / 1000} s)`],
          seconds,
        });
        return;
      }
      let failed = [];
      let passed = 0;
      try {
        const report = JSON.parse(readFileSync(reportFile, 'utf8'));
        for (const file of report.testResults ?? []) {
          for (const test of file.assertionResults ?? []) {
            if (test.status === 'failed') failed.push(test.fullName ?? test.title);
            if (test.status === 'passed') passed++;
          }
          // A file that failed to load (a mutant that breaks the module) has no tests.
          if ((file.assertionResults ?? []).length === 0 && file.status === 'failed')
            failed.push(`${file.name}: ${String(file.message ?? 'failed to run').slice(0, 120)}`);
        }
      } catch {
        failed = [`(vitest exited ${code} without a readable report)`];
      }
      if (code === 0 && failed.length === 0)
        resolvePromise({ verdict: 'survived', by: [], seconds, passed });
      else
        resolvePromise({
          verdict: 'killed',
          by: failed.length > 0 ? failed : [`(exit ${code})`],
          seconds,
        });
    });
  });
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const mutants = options.only ? MUTANTS.filter((m) => options.only.has(m.id)) : MUTANTS;
  if (options.only && mutants.length !== options.only.size) {
    throw new Error(`unknown mutant in --only: ${[...options.only].join(',')}`);
  }
  if (options.check) {
    // All of them at once, not the first: one look shows every mutant the code has outrun.
    const stale = stalePatches(mutants);
    for (const line of stale) console.error(line);
    if (stale.length > 0) process.exit(1);
    console.log(`${mutants.length} mutants, each patch text found exactly once`);
    return;
  }
  if (options.list) {
    checkPatches(mutants);
    for (const m of mutants) console.log(`${m.id}  ${m.file.replace(`${src}/`, '')}  ${m.rule}`);
    return;
  }
  const files = [...new Set(mutants.map((m) => m.file))];
  const dirty = git('status', '--porcelain', '--', ...files).stdout.trim();
  if (dirty) throw new Error(`commit or restore these first, they are mutated in place:\n${dirty}`);
  checkPatches(mutants);

  const originals = new Map(files.map((f) => [f, readFileSync(join(root, f), 'utf8')]));
  const restoreAll = () => {
    for (const [file, text] of originals) writeFileSync(join(root, file), text);
  };
  const onSignal = () => {
    restoreAll();
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const work = mkdtempSync(join(tmpdir(), 'tessera-mutants-'));
  const results = [];
  try {
    for (const mutant of mutants) {
      const original = originals.get(mutant.file);
      writeFileSync(join(root, mutant.file), original.replace(mutant.find, mutant.replace));
      try {
        let result;
        let seconds = 0;
        for (const [stage, testFiles] of (mutant.stages ?? STAGES).entries()) {
          result = await runTests(testFiles, join(work, `${mutant.id}-${stage}.json`));
          seconds += result.seconds;
          result = { ...result, seconds, stage: stage + 1 };
          if (result.verdict === 'killed') break;
        }
        results.push({
          id: mutant.id,
          file: mutant.file,
          rule: mutant.rule,
          ...(mutant.stages ? { testFiles: mutant.stages.flat() } : {}),
          ...result,
        });
        console.log(
          `${mutant.id} ${result.verdict.padEnd(8)} ${String(result.seconds).padStart(4)} s  ${mutant.rule}` +
            (result.by.length > 0 ? `\n       by: ${result.by.slice(0, 2).join(' | ')}` : ''),
        );
      } finally {
        writeFileSync(join(root, mutant.file), original);
      }
    }
  } finally {
    restoreAll();
    rmSync(work, { recursive: true, force: true });
  }
  const stillDirty = git('status', '--porcelain', '--', ...files).stdout.trim();
  if (stillDirty) throw new Error(`files not restored:\n${stillDirty}`);

  const survived = results.filter((r) => r.verdict === 'survived');
  console.log(`\n${results.length - survived.length} killed, ${survived.length} survived`);
  for (const r of survived) console.log(`  survived: ${r.id} ${r.rule}`);
  const out = join(root, 'bench/results/mutate-round-rules.json');
  mkdirSync(dirname(out), { recursive: true });
  // A partial run (--only) merges into the previous results rather than replacing them.
  let previous = [];
  try {
    previous = JSON.parse(readFileSync(out, 'utf8')).results ?? [];
  } catch {}
  const byId = new Map(previous.map((r) => [r.id, r]));
  for (const r of results) byId.set(r.id, { ...r, at: new Date().toISOString() });
  const merged = MUTANTS.map((m) => byId.get(m.id)).filter(Boolean);
  writeFileSync(out, `${JSON.stringify({ testFiles: TEST_FILES, results: merged }, null, 2)}\n`);
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
