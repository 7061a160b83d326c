import type { Series } from './compare.js';

/**
 * A self-contained SVG of two panels, test accuracy and test loss per round, one line per
 * series, with axes, ticks and a legend: plain SVG 1.1 a paper can include (or convert to
 * PDF) without any runtime. Colours are the Okabe–Ito palette, safe for colour blindness.
 */
const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9'];
const PANEL = { width: 420, height: 300, left: 56, right: 16, top: 36, bottom: 44 };

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Round numbers for an axis: about `count` ticks at 1, 2 or 5 times a power of ten. */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].find((m) => m * magnitude >= raw) ?? 10) * magnitude;
  const ticks: number[] = [];
  for (let t = Math.ceil(min / step) * step; t <= max + step * 1e-9; t += step) {
    ticks.push(Number(t.toPrecision(12)));
  }
  return ticks;
}

function panel(
  series: readonly Series[],
  metric: 'accuracy' | 'loss',
  title: string,
  offsetX: number,
): string {
  const { width, height, left, right, top, bottom } = PANEL;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const points = series.flatMap((s) => s.points.filter((p) => p[metric] !== null));
  const rounds = points.map((p) => p.round);
  const values = points.map((p) => p[metric] as number);
  const xMin = Math.min(...rounds, 1);
  const xMax = Math.max(...rounds, xMin + 1);
  let yMin = Math.min(...values);
  let yMax = Math.max(...values);
  if (!Number.isFinite(yMin)) [yMin, yMax] = [0, 1];
  if (yMax - yMin < 1e-9) [yMin, yMax] = [yMin - 0.5, yMax + 0.5];
  const pad = (yMax - yMin) * 0.05;
  yMin -= pad;
  yMax += pad;
  const x = (round: number) => offsetX + left + ((round - xMin) / (xMax - xMin)) * plotW;
  const y = (value: number) => top + (1 - (value - yMin) / (yMax - yMin)) * plotH;

  const out: string[] = [];
  out.push(
    `<text x="${offsetX + left + plotW / 2}" y="20" text-anchor="middle" font-weight="bold">${escapeXml(title)}</text>`,
  );
  out.push(
    `<rect x="${offsetX + left}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`,
  );
  for (const tick of niceTicks(yMin, yMax)) {
    if (tick < yMin || tick > yMax) continue;
    out.push(
      `<line x1="${offsetX + left}" x2="${offsetX + left + plotW}" y1="${y(tick).toFixed(1)}" y2="${y(tick).toFixed(1)}" stroke="#ddd"/>`,
      `<text x="${offsetX + left - 6}" y="${(y(tick) + 4).toFixed(1)}" text-anchor="end">${tick}</text>`,
    );
  }
  for (const tick of niceTicks(xMin, xMax, 6)) {
    if (!Number.isInteger(tick)) continue;
    out.push(
      `<line x1="${x(tick).toFixed(1)}" x2="${x(tick).toFixed(1)}" y1="${top + plotH}" y2="${top + plotH + 4}" stroke="#333"/>`,
      `<text x="${x(tick).toFixed(1)}" y="${top + plotH + 18}" text-anchor="middle">${tick}</text>`,
    );
  }
  out.push(
    `<text x="${offsetX + left + plotW / 2}" y="${height - 6}" text-anchor="middle">round</text>`,
  );
  series.forEach((s, index) => {
    const colour = PALETTE[index % PALETTE.length];
    const path = s.points
      .filter((p) => p[metric] !== null)
      .map((p) => `${x(p.round).toFixed(1)},${y(p[metric] as number).toFixed(1)}`);
    if (path.length === 0) return;
    out.push(
      `<polyline points="${path.join(' ')}" fill="none" stroke="${colour}" stroke-width="2"${index > 0 ? ' stroke-dasharray="6 3"' : ''}/>`,
    );
    // Markers help on short runs and only clutter long ones.
    if (path.length > 40) return;
    for (const point of path) {
      const [px, py] = point.split(',');
      out.push(`<circle cx="${px}" cy="${py}" r="2.5" fill="${colour}"/>`);
    }
  });
  return out.join('\n');
}

export function comparisonChartSvg(title: string, series: readonly Series[]): string {
  const width = PANEL.width * 2;
  const legendHeight = 20 * series.length + 10;
  const height = PANEL.height + legendHeight + 24;
  const legend = series
    .map((s, index) => {
      const yPos = PANEL.height + 24 + 20 * index;
      const colour = PALETTE[index % PALETTE.length];
      return `<line x1="${PANEL.left}" x2="${PANEL.left + 30}" y1="${yPos}" y2="${yPos}" stroke="${colour}" stroke-width="2"${index > 0 ? ' stroke-dasharray="6 3"' : ''}/><text x="${PANEL.left + 38}" y="${yPos + 4}">${escapeXml(s.label)}</text>`;
    })
    .join('\n');
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<title>${escapeXml(title)}</title>`,
    '<rect width="100%" height="100%" fill="white"/>',
    `<g transform="translate(0, 24)">`,
    panel(series, 'accuracy', 'Test accuracy', 0),
    panel(series, 'loss', 'Test loss', PANEL.width),
    '</g>',
    `<text x="${width / 2}" y="16" text-anchor="middle" font-size="14">${escapeXml(title)}</text>`,
    legend,
    '</svg>',
    '',
  ].join('\n');
}
