/**
 * The in-memory relay's text codec for test/secagg-chromium.test.ts: SecAgg messages between
 * Node and a page as JSON, binary fields as `{ $bytes: base64 }`. Imported by the page's bundle
 * and by the test, so both ends encode the same way.
 */

export type Relayed = string | number | boolean | null | Relayed[] | { [key: string]: Relayed };

export function encodeRelay(value: unknown): Relayed {
  if (value instanceof Uint8Array) {
    let binary = '';
    for (const byte of value) binary += String.fromCharCode(byte);
    return { $bytes: btoa(binary) };
  }
  if (Array.isArray(value)) return value.map(encodeRelay);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, encodeRelay(item)]));
  }
  return value as Relayed;
}

export function decodeRelay<T>(value: Relayed): T {
  return decodeValue(value) as T;
}

function decodeValue(value: Relayed): unknown {
  if (Array.isArray(value)) return value.map(decodeValue);
  if (typeof value === 'object' && value !== null) {
    const bytes = value['$bytes'];
    if (typeof bytes === 'string')
      return Uint8Array.from(atob(bytes), (char) => char.charCodeAt(0));
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, decodeValue(item)]));
  }
  return value;
}

/** What a page answers for one call: the reply, or the refusal's code and field. */
export type PageAnswer =
  | { ok: true; message: Relayed }
  | { ok: false; code: string; field?: string };
