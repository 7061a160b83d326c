/**
 * Small SVG charts, drawn by hand: a line chart of metrics per round and a bar chart of round
 * durations. Enough for a few thousand rounds, no charting dependency.
 */

export interface Series {
  name: string;
  color: string;
  points: Array<[number, number]>;
}

const WIDTH = 520;
const HEIGHT = 220;
const PAD = { left: 48, right: 12, top: 12, bottom: 28 };

function ticks(min: number, max: number, count: number): number[] {
  if (max === min) return [min];
  const step = (max - min) / count;
  return Array.from({ length: count + 1 }, (_, k) => min + k * step);
}

function label(value: number): string {
  return Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(2);
}

export function LineChart(props: {
  title: string;
  series: Series[];
  yMin?: number;
  yMax?: number;
  testId: string;
}) {
  const all = props.series.flatMap((s) => s.points);
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => y);
  const xMin = Math.min(1, ...xs);
  const xMax = Math.max(xMin + 1, ...xs);
  const yMin = props.yMin ?? (ys.length ? Math.min(...ys) : 0);
  const yMax = props.yMax ?? (ys.length ? Math.max(...ys, yMin + 1e-6) : 1);
  const x = (value: number) =>
    PAD.left + ((value - xMin) / (xMax - xMin)) * (WIDTH - PAD.left - PAD.right);
  const y = (value: number) =>
    HEIGHT - PAD.bottom - ((value - yMin) / (yMax - yMin || 1)) * (HEIGHT - PAD.top - PAD.bottom);
  const xTicks = ticks(xMin, xMax, Math.min(6, xMax - xMin)).map((t) => Math.round(t));
  return (
    <figure className="chart" data-testid={props.testId} data-points={all.length}>
      <figcaption>{props.title}</figcaption>
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={props.title}>
        {ticks(yMin, yMax, 4).map((t) => (
          <g key={`y${t}`}>
            <line x1={PAD.left} x2={WIDTH - PAD.right} y1={y(t)} y2={y(t)} className="grid" />
            <text x={PAD.left - 6} y={y(t) + 4} textAnchor="end">
              {label(t)}
            </text>
          </g>
        ))}
        {[...new Set(xTicks)].map((t) => (
          <text key={`x${t}`} x={x(t)} y={HEIGHT - 8} textAnchor="middle">
            {t}
          </text>
        ))}
        {props.series.map((s) => (
          <g key={s.name}>
            <polyline
              fill="none"
              stroke={s.color}
              strokeWidth={2}
              points={s.points.map(([px, py]) => `${x(px)},${y(py)}`).join(' ')}
            />
            {s.points.map(([px, py]) => (
              <circle key={px} cx={x(px)} cy={y(py)} r={3} fill={s.color} className="point">
                <title>
                  {s.name} round {px}: {py.toFixed(4)}
                </title>
              </circle>
            ))}
          </g>
        ))}
      </svg>
      <div className="legend">
        {props.series.map((s) => (
          <span key={s.name}>
            <i style={{ background: s.color }} /> {s.name}
          </span>
        ))}
        {all.length === 0 ? <span className="muted">no rounds yet</span> : null}
      </div>
    </figure>
  );
}

export function BarChart(props: {
  title: string;
  bars: Array<[number, number]>;
  unit: string;
  testId: string;
}) {
  const max = Math.max(1, ...props.bars.map(([, v]) => v));
  const width = (WIDTH - PAD.left - PAD.right) / Math.max(props.bars.length, 1);
  const y = (value: number) => (value / max) * (HEIGHT - PAD.top - PAD.bottom);
  return (
    <figure className="chart" data-testid={props.testId} data-points={props.bars.length}>
      <figcaption>{props.title}</figcaption>
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={props.title}>
        {ticks(0, max, 4).map((t) => (
          <g key={`y${t}`}>
            <line
              x1={PAD.left}
              x2={WIDTH - PAD.right}
              y1={HEIGHT - PAD.bottom - y(t)}
              y2={HEIGHT - PAD.bottom - y(t)}
              className="grid"
            />
            <text x={PAD.left - 6} y={HEIGHT - PAD.bottom - y(t) + 4} textAnchor="end">
              {label(t)}
            </text>
          </g>
        ))}
        {props.bars.map(([round, value], k) => (
          <g key={round}>
            <rect
              x={PAD.left + k * width + 1}
              y={HEIGHT - PAD.bottom - y(value)}
              width={Math.max(width - 2, 1)}
              height={y(value)}
              className="bar"
            >
              <title>
                round {round}: {value.toFixed(1)} {props.unit}
              </title>
            </rect>
            {props.bars.length <= 30 ? (
              <text x={PAD.left + (k + 0.5) * width} y={HEIGHT - 8} textAnchor="middle">
                {round}
              </text>
            ) : null}
          </g>
        ))}
      </svg>
      <div className="legend">
        <span className="muted">{props.unit}</span>
      </div>
    </figure>
  );
}
