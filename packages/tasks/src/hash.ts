import { canonicalJson } from './canonical-json.js';
import { parseTaskDefinition } from './schema.js';
import { sha256HexOfText } from './sha256.js';

/**
 * A task's content address: SHA-256 (lowercase hex) of the UTF-8 bytes of the canonical JSON
 * (canonical-json.ts) of the task as parseTaskDefinition returns it. Key order and whitespace
 * of the submitted JSON do not matter; every value does, the description and the topology's
 * layer names included. Throws INVALID_ARGUMENT for a value that is not a valid task.
 *
 * To recompute it elsewhere: `sha256(utf8(jcs(task)))` with any RFC 8785 implementation, e.g.
 * in Python `hashlib.sha256(json.dumps(task, sort_keys=True, separators=(',', ':'),
 * ensure_ascii=False).encode()).hexdigest()` agrees for tasks whose keys are ASCII and whose
 * numbers are integers (Python sorts by code point, and writes 1e-05 where JavaScript writes
 * 1e-5).
 */
export function taskSha256(task: unknown): string {
  return sha256HexOfText(canonicalJson(parseTaskDefinition(task)));
}
