import { useState } from 'react';
import { api } from '../api.js';
import { ErrorBanner } from '../ui.js';

/** What `GET /api/runs/:id/verify` answers (packages/research's verifyRun). */
interface VerifyAnswer {
  identical: boolean;
  unchecked: { fromRound: number; reason: string } | null;
  checks: Array<{ round: number; match: boolean; stateMatch: boolean | null }>;
}

/**
 * Verify, for everyone who may read the run: the coordinator replays the run from its kept
 * client updates and compares every checkpoint's sha256 (and the strategy's state where it was
 * stored) — what `tessera verify` does, said in words.
 */
export function VerifyCard(props: { runId: string }) {
  const [answer, setAnswer] = useState<VerifyAnswer | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const verify = async () => {
    setBusy(true);
    setError(null);
    try {
      setAnswer(await api<VerifyAnswer>('GET', `/runs/${props.runId}/verify`));
    } catch (cause) {
      setError((cause as Error).message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="card" data-testid="verify">
      <h2>Verify</h2>
      <p className="muted">
        Replays the run from its kept client updates and checks every checkpoint, bit for bit.
      </p>
      <button type="button" onClick={verify} disabled={busy}>
        {busy ? 'Verifying…' : 'Verify'}
      </button>
      <ErrorBanner message={error} />
      {answer === null ? null : <p data-testid="verify-result">{describe(answer)}</p>}
    </div>
  );
}

function describe({ identical, unchecked, checks }: VerifyAnswer): string {
  const differing = checks.filter((c) => !c.match || c.stateMatch === false).map((c) => c.round);
  if (checks.length === 0 && unchecked !== null) {
    return `Nothing to replay: ${unchecked.reason}. It can be verified only against its records, not replayed.`;
  }
  const checked = `${checks.length - differing.length} of ${checks.length} checkpoints reproduced bit-identically`;
  const rest =
    unchecked === null
      ? ''
      : ` Rounds from ${unchecked.fromRound} on not replayed: ${unchecked.reason}.`;
  if (identical) return `Bit-identical: ${checked}.${rest}`;
  return differing.length > 0
    ? `NOT identical: ${checked}; ${differing.length > 1 ? `rounds ${differing.join(', ')} differ` : `round ${differing[0]} differs`}.${rest}`
    : `${checked}.${rest}`;
}
