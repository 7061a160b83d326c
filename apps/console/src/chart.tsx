/**
 * Small SVG charts, drawn by hand: a line chart of metrics per round and a bar chart of round
 * durations. Enough for a few thousand rounds, no charting dependency.
 */
import { formatNumber, formatPercent } from './format.js';
import { decimalsFor, niceAxis, roundTicks, shareAxis } from './scale.js';

export interface Series {
  name: string;
  color: string;
  points: Array<[number, number]>;
}

const WIDTH = 520;
const HEIGHT = 220;
const PAD = { left: 48, right: 12, top: 12, bottom: 28 };

/**
 * Metrics per round. `shares` (accuracies): the axis fits the data inside 0–100% and is
 * labelled in percent; otherwise it starts at `yMin` (or the data's lowest value).
 */
export function LineChart(props: {
  title: string;
  series: Series[];
  shares?: boolean;
  yMin?: number;
  testId: string;
}) {
  const all = props.series.flatMap((s) => s.points);
  const xs = all.map(([x]) => x);
  const ys = all.map(([, y]) => y);
  const xMin = Math.min(1, ...xs);
  const xMax = Math.max(xMin + 1, ...xs);
  const axis = props.shares
    ? shareAxis(ys)
    : niceAxis(props.yMin ?? (ys.length ? Math.min(...ys) : 0), ys.length ? Math.max(...ys) : 1);
  const { min: yMin, max: yMax } = axis;
  const step = (axis.ticks[1] ?? yMax) - (axis.ticks[0] ?? yMin);
  const yLabel = props.shares
    ? (value: number) => `${(value * 100).toFixed(decimalsFor(step * 100))}%`
    : (value: number) => value.toFixed(decimalsFor(step));
  const x = (value: number) =>
    PAD.left + ((value - xMin) / (xMax - xMin)) * (WIDTH - PAD.left - PAD.right);
  const y = (value: number) =>
    HEIGHT - PAD.bottom - ((value - yMin) / (yMax - yMin || 1)) * (HEIGHT - PAD.top - PAD.bottom);
  const xTicks = roundTicks(xMin, xMax);
  return (
    <figure className="chart" data-testid={props.testId} data-points={all.length}>
      <figcaption>{props.title}</figcaption>
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={props.title}>
        {axis.ticks.map((t) => (
          <g key={`y${t}`}>
            <line x1={PAD.left} x2={WIDTH - PAD.right} y1={y(t)} y2={y(t)} className="grid" />
            <text x={PAD.left - 6} y={y(t) + 4} textAnchor="end" className="y-tick">
              {yLabel(t)}
            </text>
          </g>
        ))}
        {xTicks.map((t) => (
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
                  {s.name} round {px}: {props.shares ? formatPercent(py) : formatNumber(py)}
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
  const axis = niceAxis(0, Math.max(1, ...props.bars.map(([, v]) => v)), 4);
  const { max } = axis;
  const step = (axis.ticks[1] ?? max) - (axis.ticks[0] ?? 0);
  const width = (WIDTH - PAD.left - PAD.right) / Math.max(props.bars.length, 1);
  const y = (value: number) => (value / max) * (HEIGHT - PAD.top - PAD.bottom);
  return (
    <figure className="chart" data-testid={props.testId} data-points={props.bars.length}>
      <figcaption>{props.title}</figcaption>
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={props.title}>
        {axis.ticks.map((t) => (
          <g key={`y${t}`}>
            <line
              x1={PAD.left}
              x2={WIDTH - PAD.right}
              y1={HEIGHT - PAD.bottom - y(t)}
              y2={HEIGHT - PAD.bottom - y(t)}
              className="grid"
            />
            <text x={PAD.left - 6} y={HEIGHT - PAD.bottom - y(t) + 4} textAnchor="end">
              {t.toFixed(decimalsFor(step))}
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
