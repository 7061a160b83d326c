/** Polls `check` until it gives a value; fails after `limitMs` naming `what`. */
export async function waitFor<T>(
  check: () => T | undefined | null | false,
  what: string,
  limitMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
