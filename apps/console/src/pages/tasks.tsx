import { type ChangeEvent, type FormEvent, useState } from 'react';
import { ApiError, api, issuesByField, type Task, type TaskDetail } from '../api.js';
import { useIsAdmin } from '../session.js';
import { ErrorBanner, formatTime, Link, navigate, useLoad } from '../ui.js';

type Definition = Task['definition'];

/** The input schema in words: what one example is. */
export function inputInWords(input: Definition['input']): string {
  switch (input.kind) {
    case 'tabular':
      return `tabular: ${input.columns.length} column${input.columns.length === 1 ? '' : 's'}, label "${input.label}"`;
    case 'image':
      return `image: ${input.height}×${input.width}, ${input.channels === 1 ? 'grayscale' : 'RGB'}, values ${input.valueRange.min} to ${input.valueRange.max}`;
    case 'text':
      return `text: ${input.tokenizer.kind} tokens, at most ${input.maxLength}, vocabulary of ${input.tokenizer.vocabulary.length}`;
    default:
      return 'unknown input';
  }
}

/** The output in words: what the model predicts. */
export function outputInWords(output: Definition['output']): string {
  switch (output.kind) {
    case 'multiclass':
      return `one of ${output.classes.length} classes`;
    case 'binary':
      return `binary: ${output.classes[0]} or ${output.classes[1]}`;
    case 'regression':
      return 'a value (regression)';
    default:
      return 'unknown output';
  }
}

function columnInWords(column: Extract<Definition['input'], { kind: 'tabular' }>['columns'][0]) {
  if (column.type === 'categorical') {
    return column.categories === undefined
      ? 'categorical, categories from the statistics round'
      : `categorical: ${column.categories.join(', ')}`;
  }
  const { standardize } = column;
  if (standardize === undefined || standardize === false) return 'numeric';
  if (standardize === 'federated') return 'numeric, standardised (statistics round)';
  return `numeric, standardised (mean ${standardize.mean}, std ${standardize.std})`;
}

const shapeText = (shape: (number | null)[]) =>
  `[${shape.map((d) => (d === null ? '?' : d)).join(', ')}]`;

export function TasksPage() {
  const isAdmin = useIsAdmin();
  const tasks = useLoad(() => api<Task[]>('GET', '/tasks'), []);
  return (
    <section>
      <h1>Tasks</h1>
      <p className="muted">
        What a federation learns: the input schema, the output and the model. Every version is kept;
        its sha256 is what runs record.
      </p>
      <ErrorBanner message={tasks.error} />
      <table data-testid="tasks">
        <thead>
          <tr>
            <th>Task</th>
            <th>Version</th>
            <th>Input</th>
            <th>Output</th>
            <th>Parameters</th>
            <th>sha256</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {(tasks.value ?? []).map((task) => (
            <tr key={task.sha256} data-task={`${task.name}@${task.version}`}>
              <td>
                <Link href={`/tasks/${task.name}/v/${task.version}`}>{task.name}</Link>
              </td>
              <td>{task.version}</td>
              <td>{task.definition.input.kind}</td>
              <td>{outputInWords(task.definition.output)}</td>
              <td>{task.paramCount.toLocaleString('en')}</td>
              <td>
                <code title={task.sha256}>{task.sha256.slice(0, 12)}</code>
              </td>
              <td>{task.builtin ? <span className="badge">built-in</span> : null}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {isAdmin ? <CreateTaskForm onCreated={(task) => navigate(taskPath(task))} /> : null}
    </section>
  );
}

const taskPath = (task: { name: string; version: number }) =>
  `/tasks/${task.name}/v/${task.version}`;

/**
 * An admin pastes or picks a task definition (JSON) and stores it, as a new task or as the
 * next version of its name; the API's field errors are listed as it gave them.
 */
function CreateTaskForm({ onCreated }: { onCreated: (task: Task) => void }) {
  const [text, setText] = useState('');
  const [newVersion, setNewVersion] = useState(false);
  const [message, setMessage] = useState<string | null>(null);
  const [errors, setErrors] = useState<Record<string, string>>({});

  const pick = async (event: ChangeEvent<HTMLInputElement>) => {
    const file = event.target.files?.[0];
    if (file) setText(await file.text());
  };
  const create = async (event: FormEvent) => {
    event.preventDefault();
    setErrors({});
    setMessage(null);
    let definition: { name?: unknown };
    try {
      definition = JSON.parse(text);
    } catch (error) {
      setMessage(`The definition is not valid JSON: ${(error as Error).message}`);
      return;
    }
    const path =
      newVersion && typeof definition.name === 'string'
        ? `/tasks/${encodeURIComponent(definition.name)}/versions`
        : '/tasks';
    try {
      onCreated(await api<Task>('POST', path, definition));
    } catch (error) {
      setErrors(issuesByField(error));
      setMessage(error instanceof ApiError ? `${error.code}: ${error.message}` : String(error));
    }
  };
  return (
    <form className="card" onSubmit={create} noValidate aria-label="Create task">
      <h2>Create task</h2>
      <p className="muted">
        A task definition as JSON (schemaVersion, name, input, output, loss, metrics, model with its
        layers topology: what tfjs <code>model.toJSON()</code> or Keras <code>to_json()</code>{' '}
        writes). The coordinator builds the model and checks it against the input and output before
        storing anything. Initial weights: <code>tessera task create</code> with{' '}
        <code>--weights</code>.
      </p>
      <ErrorBanner message={message} />
      {Object.keys(errors).length > 0 ? (
        <ul className="errors" data-testid="task-errors">
          {Object.entries(errors).map(([field, error]) => (
            <li key={field} data-error-for={field}>
              <code>{field}</code>: {error}
            </li>
          ))}
        </ul>
      ) : null}
      <label className="field">
        <span className="label">Definition file</span>
        <input type="file" name="file" accept="application/json,.json" onChange={pick} />
      </label>
      <label className="field">
        <span className="label">Definition (JSON)</span>
        <textarea
          name="definition"
          rows={14}
          spellCheck={false}
          value={text}
          onChange={(event) => setText(event.target.value)}
        />
      </label>
      <label className="field inline">
        <input
          type="checkbox"
          name="newVersion"
          checked={newVersion}
          onChange={(event) => setNewVersion(event.target.checked)}
        />{' '}
        the next version of an existing task (its name)
      </label>
      <button type="submit">Create task</button>
    </form>
  );
}

export function TaskPage({ name, version }: { name: string; version?: number }) {
  const task = useLoad(
    () =>
      api<TaskDetail>(
        'GET',
        `/tasks/${encodeURIComponent(name)}${version === undefined ? '' : `?version=${version}`}`,
      ),
    [name, version],
  );
  const value = task.value;
  return (
    <section>
      <p>
        <Link href="/tasks">Tasks</Link> /
      </p>
      <h1>
        {name}
        {value ? `@${value.version}` : ''}
        {value?.builtin ? <span className="badge">built-in</span> : null}
      </h1>
      <ErrorBanner message={task.error} />
      {value ? (
        <>
          {value.definition.description ? <p>{value.definition.description}</p> : null}
          <dl className="facts">
            <dt>sha256</dt>
            <dd>
              <code data-testid="task-sha256">{value.sha256}</code>
            </dd>
            <dt>Input</dt>
            <dd data-testid="task-input">{inputInWords(value.definition.input)}</dd>
            <dt>Output</dt>
            <dd data-testid="task-output">{outputInWords(value.definition.output)}</dd>
            <dt>Loss</dt>
            <dd>{value.definition.loss}</dd>
            <dt>Metrics</dt>
            <dd>{value.definition.metrics.join(', ') || 'loss only'}</dd>
            <dt>Parameters</dt>
            <dd>{value.paramCount.toLocaleString('en')}</dd>
            <dt>Initial weights</dt>
            <dd>{value.hasWeights ? 'uploaded' : 'seeded from the run'}</dd>
            <dt>Created</dt>
            <dd>{formatTime(value.createdAt)}</dd>
          </dl>
          {value.definition.input.kind === 'tabular' ? (
            <>
              <h2>Columns</h2>
              <table data-testid="task-columns">
                <tbody>
                  {value.definition.input.columns.map((column) => (
                    <tr key={column.name}>
                      <td>{column.name}</td>
                      <td>{columnInWords(column)}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </>
          ) : null}
          {value.definition.output.kind !== 'regression' ? (
            <p data-testid="task-classes">Classes: {value.definition.output.classes.join(', ')}</p>
          ) : null}
          <h2>Model</h2>
          <p>Input shape {shapeText(value.model.inputShape)}</p>
          <table data-testid="task-layers">
            <thead>
              <tr>
                <th>Layer</th>
                <th>Class</th>
                <th>Output shape</th>
                <th>Parameters</th>
              </tr>
            </thead>
            <tbody>
              {value.model.layers.map((layer) => (
                <tr key={layer.name}>
                  <td>{layer.name}</td>
                  <td>{layer.className}</td>
                  <td>{shapeText(layer.outputShape)}</td>
                  <td>{layer.paramCount.toLocaleString('en')}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      ) : null}
    </section>
  );
}
