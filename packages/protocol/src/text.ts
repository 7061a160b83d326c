/**
 * Text that PostgreSQL stores as given, in TEXT and in jsonb: no NUL (TEXT refuses it) and no
 * unpaired UTF-16 surrogate (it has no UTF-8 encoding). Both the wire frames (messages.ts) and
 * the REST bodies (admin-api.ts) refuse anything else with a field error.
 */
const UNPAIRED_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function isStorableText(value: string): boolean {
  return !value.includes('\u0000') && !UNPAIRED_SURROGATE.test(value);
}

export const UNSTORABLE_TEXT_MESSAGE = 'must not contain NUL characters or unpaired surrogates';
