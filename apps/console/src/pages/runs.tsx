import { createRunSchemaFor, DEFAULT_UPDATE_STORAGE_LIMIT_MB } from '@tessera/protocol';
import { type FormEvent, useMemo, useState } from 'react';
import { ApiError, api, type Federation, issuesByField, type Meta, type Run } from '../api.js';
import { useLiveEvent } from '../live.js';
import {
  type DeadlineUnit,
  deadlineMs,
  describeBounds,
  inPeoplesWords,
  LABELS,
  numberOrText,
  optionFields,
  optionValue,
} from '../run-form.js';
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
  hint: string;
  optional?: boolean;
}

const NUMBER_FIELDS: NumberField[] = [
  { name: 'rounds', hint: 'how many rounds to train, 1 to 100,000' },
  {
    name: 'clientsPerRound',
    hint: 'optional: a fixed number of clients per round (or give a fraction below)',
    optional: true,
  },
  {
    name: 'fractionFit',
    hint: 'optional: the share of connected clients per round, above 0 and at most 1 (FedAvg’s C)',
    optional: true,
  },
  {
    name: 'minClients',
    hint: 'a round starts with and commits at least this many clients',
  },
];

const TRAINING_FIELDS: NumberField[] = [
  { name: 'localEpochs', hint: 'E in FedAvg: passes over each client’s data per round' },
  { name: 'batchSize', hint: 'B in FedAvg' },
  { name: 'learningRate', hint: 'client SGD learning rate, above 0' },
  { name: 'seed', hint: 'sampling and initial weights: a whole number, 0 or more' },
];

const DEFAULTS: Record<string, string> = {
  rounds: '10',
  clientsPerRound: '',
  fractionFit: '',
  minClients: '1',
  roundDeadline: '10',
  localEpochs: '1',
  batchSize: '10',
  learningRate: '0.05',
  seed: '0',
  updateStorageLimitMb: String(DEFAULT_UPDATE_STORAGE_LIMIT_MB),
  secureAggregationClipRange: '1',
  localDpClipNorm: '1',
  localDpNoiseMultiplier: '1',
  localDpDelta: '0.00001',
};

/** The local DP boxes: their API field (under localDp) and the form's name. */
const LOCAL_DP_FIELDS = [
  {
    name: 'clipNorm',
    box: 'localDpClipNorm',
    label: 'Local clip norm',
    hint: "C: each client's change is clipped to this L2 norm before noise",
  },
  {
    name: 'noiseMultiplier',
    box: 'localDpNoiseMultiplier',
    label: 'Local noise multiplier',
    hint: 'sigma: each client adds N(0, (sigma C)^2) per coordinate (0: clip only, no privacy)',
  },
  {
    name: 'delta',
    box: 'localDpDelta',
    label: 'Local delta',
    hint: "delta at which each client's epsilon is recorded",
  },
] as const;

/**
 * The run form. Checked with the API's own schema before it is sent (and by the API again);
 * every message, the form's, the schema's or the server's, is shown at its field in the form's
 * words. The deadline is asked in seconds or minutes, the strategy's options from its schema.
 */
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
  const [deadlineUnit, setDeadlineUnit] = useState<DeadlineUnit>('min');
  const [keepUpdates, setKeepUpdates] = useState(false);
  const [secureAggregation, setSecureAggregation] = useState(false);
  const [localDp, setLocalDp] = useState(false);
  const [options, setOptions] = useState<Record<string, string>>({});
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
  const strategy = values['strategy'] ?? 'fedavg';
  const strategyFields = optionFields(meta.value?.strategyOptions?.[strategy]);

  const set = (name: string) => (event: { target: { value: string } }) =>
    setValues((current) => ({ ...current, [name]: event.target.value }));

  /** Messages by API field, in the form's words; those of no field on the form go on top. */
  const show = (found: Record<string, string>) => {
    const shown = new Set([
      ...Object.keys(LABELS),
      ...strategyFields.map((f) => `strategyOptions.${f.name}`),
      ...LOCAL_DP_FIELDS.map((f) => `localDp.${f.name}`),
    ]);
    const atFields: Record<string, string> = {};
    const elsewhere: string[] = [];
    for (const [field, text] of Object.entries(found)) {
      if (shown.has(field)) atFields[field] = inPeoplesWords(field, text);
      else elsewhere.push(inPeoplesWords(field, text));
    }
    setErrors(atFields);
    setMessage(elsewhere.length > 0 ? elsewhere.join('; ') : null);
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!schema) return;
    const found: Record<string, string> = {};
    const request: Record<string, unknown> = { federationId, model: values['model'], strategy };
    if (values['name']) request['name'] = values['name'];
    for (const field of [...NUMBER_FIELDS, ...TRAINING_FIELDS]) {
      const raw = (values[field.name] ?? '').trim();
      if (raw === '' && field.optional) continue;
      // An empty or non-numeric box is sent as is, so the schema names the field.
      request[field.name] = numberOrText(raw);
    }
    const deadline = deadlineMs(values['roundDeadline'] ?? '', deadlineUnit);
    if (typeof deadline === 'number') request['roundDeadlineMs'] = deadline;
    else found['roundDeadlineMs'] = deadline.error;
    request['keepUpdates'] = keepUpdates;
    if (keepUpdates)
      request['updateStorageLimitMb'] = numberOrText(values['updateStorageLimitMb'] ?? '');
    request['secureAggregation'] = secureAggregation
      ? { clipRange: numberOrText(values['secureAggregationClipRange'] ?? '') }
      : null;
    // Boxes sent as typed (text too), so the schema names the box at fault.
    request['localDp'] = localDp
      ? Object.fromEntries(
          LOCAL_DP_FIELDS.map((f) => [f.name, numberOrText((values[f.box] ?? '').trim())]),
        )
      : null;
    const strategyOptions: Record<string, number> = {};
    for (const field of strategyFields) {
      const value = optionValue(field, options[`${strategy}.${field.name}`] ?? '');
      if (typeof value === 'number') strategyOptions[field.name] = value;
      else if (value !== undefined) found[`strategyOptions.${field.name}`] = value.error;
    }
    request['strategyOptions'] = strategyOptions;
    const checked = schema.safeParse(request);
    if (!checked.success) {
      for (const issue of checked.error.issues) found[issue.path.join('.')] ??= issue.message;
    }
    if (!checked.success || Object.keys(found).length > 0) {
      show(found);
      return;
    }
    show({});
    try {
      const run = await api<Run>('POST', '/runs', checked.data);
      navigate(`/runs/${run.id}`);
    } catch (error) {
      // The server knows more (Krum's minimum clients, a model gone): shown at the field too.
      const byField = issuesByField(error);
      if (Object.keys(byField).length > 0) show(byField);
      else setMessage(error instanceof ApiError ? error.message : String(error));
    }
  };

  const numberBox = (field: NumberField) => (
    <Field
      key={field.name}
      label={LABELS[field.name] ?? field.name}
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
  );

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
        <Field
          label="Strategy"
          name="strategy"
          error={errors['strategy'] ?? errors['strategyOptions']}
        >
          <select name="strategy" value={strategy} onChange={set('strategy')}>
            {(meta.value?.strategies ?? []).map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </Field>
        {strategyFields.map((field) => {
          const key = `${strategy}.${field.name}`;
          const path = `strategyOptions.${field.name}`;
          return (
            <Field
              key={key}
              label={`${strategy}: ${field.name}`}
              name={path}
              error={errors[path]}
              hint={`${field.description ? `${field.description}; ` : ''}${describeBounds(field)}${field.default === undefined ? '; optional' : `; default ${field.default}`}`}
            >
              <input
                name={path}
                inputMode="decimal"
                placeholder={field.default === undefined ? '' : String(field.default)}
                value={options[key] ?? ''}
                onChange={(event) =>
                  setOptions((current) => ({ ...current, [key]: event.target.value }))
                }
              />
            </Field>
          );
        })}
        {NUMBER_FIELDS.map(numberBox)}
        <Field
          label="Round deadline"
          name="roundDeadlineMs"
          error={errors['roundDeadlineMs']}
          hint="a round closes after this; at least 5 seconds"
        >
          <span className="with-unit">
            <input
              name="roundDeadline"
              inputMode="decimal"
              value={values['roundDeadline']}
              onChange={set('roundDeadline')}
            />
            <select
              name="roundDeadlineUnit"
              aria-label="Round deadline unit"
              value={deadlineUnit}
              onChange={(event) => setDeadlineUnit(event.target.value as DeadlineUnit)}
            >
              <option value="s">seconds</option>
              <option value="min">minutes</option>
            </select>
          </span>
        </Field>
        {TRAINING_FIELDS.map(numberBox)}
        <Field
          label={LABELS['keepUpdates'] ?? 'keepUpdates'}
          name="keepUpdates"
          error={errors['keepUpdates']}
          hint="keeps each client update, so the run can be replayed (tessera replay), not only verified"
        >
          <input
            type="checkbox"
            name="keepUpdates"
            checked={keepUpdates}
            onChange={(event) => setKeepUpdates(event.target.checked)}
          />
        </Field>
        {keepUpdates ? (
          <Field
            label={`${LABELS['updateStorageLimitMb']} (MiB)`}
            name="updateStorageLimitMb"
            error={errors['updateStorageLimitMb']}
            hint="past this, later rounds are committed without their update bytes"
          >
            <input
              name="updateStorageLimitMb"
              inputMode="numeric"
              value={values['updateStorageLimitMb']}
              onChange={set('updateStorageLimitMb')}
            />
          </Field>
        ) : null}
        <Field
          label={LABELS['secureAggregation'] ?? 'secureAggregation'}
          name="secureAggregation"
          error={errors['secureAggregation']}
          hint="clients mask their changes: the coordinator learns only their sum (docs/secure-aggregation.md)"
        >
          <input
            type="checkbox"
            name="secureAggregation"
            checked={secureAggregation}
            onChange={(event) => setSecureAggregation(event.target.checked)}
          />
        </Field>
        {secureAggregation ? (
          <Field
            label="Clip range"
            name="secureAggregation.clipRange"
            error={errors['secureAggregation.clipRange']}
            hint="each coordinate of a client's change is clipped to [-R, R] before masking"
          >
            <input
              name="secureAggregationClipRange"
              inputMode="decimal"
              value={values['secureAggregationClipRange']}
              onChange={set('secureAggregationClipRange')}
            />
          </Field>
        ) : null}
        <Field
          label={LABELS['localDp'] ?? 'localDp'}
          name="localDp"
          error={errors['localDp']}
          hint="every client clips its change and adds Gaussian noise before sending (docs/research.md)"
        >
          <input
            type="checkbox"
            name="localDp"
            checked={localDp}
            onChange={(event) => setLocalDp(event.target.checked)}
          />
        </Field>
        {localDp
          ? LOCAL_DP_FIELDS.map((f) => (
              <Field
                key={f.name}
                label={f.label}
                name={`localDp.${f.name}`}
                error={errors[`localDp.${f.name}`]}
                hint={f.hint}
              >
                <input
                  name={f.box}
                  inputMode="decimal"
                  value={values[f.box]}
                  onChange={set(f.box)}
                />
              </Field>
            ))
          : null}
        <div className="actions">
          <button type="submit" disabled={!schema}>
            Create run
          </button>
        </div>
      </form>
    </section>
  );
}
