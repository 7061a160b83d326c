/**
 * The canonical JSON text of a value, the form a task is hashed in.
 *
 * The rules (they are those of RFC 8785, the JSON Canonicalization Scheme, for the values a
 * task can hold: no NaN or Infinity, no undefined), so that anyone can recompute a task's
 * sha256 in another language:
 * - no whitespace anywhere;
 * - object members sorted by key, comparing keys as sequences of UTF-16 code units (what
 *   JavaScript's default `Array.prototype.sort` does); a key appears once;
 * - strings written as ECMAScript's `JSON.stringify` writes them (`"` and `\` escaped,
 *   control characters below U+0020 as `\b \f \n \r \t` or `\u00XX` with lowercase hex,
 *   every other character as itself);
 * - numbers written as ECMAScript's `Number.prototype.toString` writes them (the shortest
 *   text that reads back as the same float64: `1`, `0.1`, `1e+21`, `-0` as `0`);
 * - `true`, `false`, `null`; arrays in their order.
 * The hash is then SHA-256 over the UTF-8 bytes of that text, written as lowercase hex.
 */
export function canonicalJson(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) {
        throw new TypeError(`canonicalJson: ${String(value)} has no JSON form`);
      }
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
      const entries = Object.entries(value as Record<string, unknown>).filter(
        // Absent and undefined are the same member: JSON.stringify drops both.
        ([, member]) => member !== undefined,
      );
      entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return `{${entries.map(([key, member]) => `${JSON.stringify(key)}:${canonicalJson(member)}`).join(',')}}`;
    }
    default:
      throw new TypeError(`canonicalJson: a ${typeof value} has no JSON form`);
  }
}
