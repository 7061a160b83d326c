import { createRunSchemaFor } from '@tessera/protocol';
import { type FormEvent, useMemo, useState } from 'react';
import { ApiError, api, type Federation, issuesByField, type Meta, type Run } from '../api.js';
import { useLiveEvent } from '../live.js';
import { useIsAdmin } from '../session.js';
import { ErrorBanner, Field, formatTime, Link, navigate, StatusBadge, useLoad } from '../ui.js';

export function RunsPage() {
  const isAdmin = useIsAdmin();
  const runs = useLoad(() => api<Run[]>('GET', '/runs'), []);
  const federations = useLoad(() => api<Federation[]>('GET', '/federations'), []);
  const names = new Map((federations.value ?? []).map((f) => [f.id, f.name]));
  useLiveEvent('run-status', runs.reload);
  useLiveEvent('round-committed', runs.reload);
  return (
    <section>
      <h1>Runs</h1>
      {isAdmin ? (
        <p>
          <Link className="button" href="/runs/new">
            New run
          </Link>
        </p>
      ) : null}
      <ErrorBanner message={runs.error} />
      <table data-testid="runs">
        <thead>
          <tr>
            <th>Name</th>
            <th>Federation</th>
            <th>Model / strategy</th>
            <th>Status</th>
            <th>Rounds</th>
            <th>Created</th>
          </tr>
        </thead>
        <tbody>
          {(runs.value ?? []).map((run) => (
            <tr key={run.id}>
              <td>
                <Link href={`/runs/${run.id}`}>{run.name}</Link>
              </td>
              <td>{names.get(run.federationId) ?? run.federationId}</td>
              <td>
                {run.config.model} / {run.config.strategy}
              </td>
              <td>
                <StatusBadge status={run.status} />
              </td>
              <td>
                {run.currentRound} / {run.config.rounds}
              </td>
              <td>{formatTime(run.createdAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

interface NumberField {
  name: string;
  label: string;
  hint: string;
  optional?: boolean;
  step?: string;
}

const NUMBER_FIELDS: NumberField[] = [
  { name: 'rounds', label: 'Rounds', hint: 'how many rounds to train' },
  {
    name: 'clientsPerRound',
    label: 'Clients per round',
    hint: 'optional: a fixed number per round',
    optional: true,
  },
  {
    name: 'fractionFit',
    label: 'Fraction of clients',
    hint: 'optional: in (0, 1], the share of connected clients per round (FedAvg’s C)',
    optional: true,
    step: 'any',
  },
  {
    name: 'minClients',
    label: 'Minimum clients',
    hint: 'a round needs at least this many updates',
  },
  { name: 'roundDeadlineMs', label: 'Round deadline (ms)', hint: 'a round closes after this' },
  { name: 'localEpochs', label: 'Local epochs', hint: 'E in FedAvg' },
  { name: 'batchSize', label: 'Batch size', hint: 'B in FedAvg' },
  { name: 'learningRate', label: 'Learning rate', hint: 'client SGD learning rate', step: 'any' },
  { name: 'seed', label: 'Seed', hint: 'sampling and initial weights' },
];

const DEFAULTS: Record<string, string> = {
  rounds: '10',
  clientsPerRound: '',
  fractionFit: '',
  minClients: '1',
  roundDeadlineMs: '600000',
  localEpochs: '1',
  batchSize: '10',
  learningRate: '0.05',
  seed: '0',
};

/** The run form, validated with the API's own schema before it is sent (and by the API again). */
export function NewRunPage() {
  const meta = useLoad(() => api<Meta>('GET', '/meta'), []);
  const federations = useLoad(() => api<Federation[]>('GET', '/federations'), []);
  const [values, setValues] = useState<Record<string, string>>({
    name: '',
    federationId: '',
    model: 'fedavg-2nn',
    strategy: 'fedavg',
    ...DEFAULTS,
  });
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [message, setMessage] = useState<string | null>(null);
  const schema = useMemo(
    () =>
      meta.value
        ? createRunSchemaFor({
            models: meta.value.models.map((m) => m.name),
            strategies: meta.value.strategies,
          })
        : null,
    [meta.value],
  );
  const federationId = values['federationId'] || federations.value?.[0]?.id || '';

  const set = (name: string) => (event: { target: { value: string } }) =>
    setValues((current) => ({ ...current, [name]: event.target.value }));

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!schema) return;
    const request: Record<string, unknown> = {
      federationId,
      model: values['model'],
      strategy: values['strategy'],
    };
    if (values['name']) request['name'] = values['name'];
    for (const field of NUMBER_FIELDS) {
      const raw = (values[field.name] ?? '').trim();
      if (raw === '' && field.optional) continue;
      // An empty or non-numeric box is sent as is, so the schema names the field.
      request[field.name] = raw === '' || Number.isNaN(Number(raw)) ? raw : Number(raw);
    }
    const checked = schema.safeParse(request);
    if (!checked.success) {
      const found: Record<string, string> = {};
      for (const issue of checked.error.issues) found[issue.path.join('.')] ??= issue.message;
      setErrors(found);
      return;
    }
    setErrors({});
    try {
      const run = await api<Run>('POST', '/runs', checked.data);
      navigate(`/runs/${run.id}`);
    } catch (error) {
      setErrors(issuesByField(error));
      setMessage(error instanceof ApiError ? error.message : String(error));
    }
  };

  return (
    <section>
      <p>
        <Link href="/runs">Runs</Link> /
      </p>
      <h1>New run</h1>
      <ErrorBanner message={meta.error ?? federations.error ?? message} />
      <form className="card grid" onSubmit={submit} noValidate aria-label="New run">
        <Field label="Name" name="name" error={errors['name']} hint="optional">
          <input name="name" value={values['name']} onChange={set('name')} />
        </Field>
        <Field label="Federation" name="federationId" error={errors['federationId']}>
          <select name="federationId" value={federationId} onChange={set('federationId')}>
            {(federations.value ?? []).map((f) => (
              <option key={f.id} value={f.id}>
                {f.name}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Model" name="model" error={errors['model']}>
          <select name="model" value={values['model']} onChange={set('model')}>
            {(meta.value?.models ?? []).map((m) => (
              <option key={m.name} value={m.name} title={m.description}>
                {m.name} ({m.paramCount.toLocaleString()} parameters)
              </option>
            ))}
          </select>
        </Field>
        <Field label="Strategy" name="strategy" error={errors['strategy']}>
          <select name="strategy" value={values['strategy']} onChange={set('strategy')}>
            {(meta.value?.strategies ?? []).map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </Field>
        {NUMBER_FIELDS.map((field) => (
          <Field
            key={field.name}
            label={field.label}
            name={field.name}
            error={errors[field.name]}
            hint={field.hint}
          >
            <input
              name={field.name}
              inputMode="decimal"
              value={values[field.name]}
              onChange={set(field.name)}
            />
          </Field>
        ))}
        <div className="actions">
          <button type="submit" disabled={!schema}>
            Create run
          </button>
        </div>
      </form>
    </section>
  );
}
