// A hand-written SVG bar chart (no dependency): groups of bars, one group per metric, one
// bar per series, on a log2 axis of ratios, bars growing from the 1x line.

export interface ChartSeries {
  name: string;
  color: string;
}

export interface ChartGroup {
  label: string;
  /** Second label line, e.g. how the ratio is taken. */
  hint: string;
  /** One entry per series, in series order; null: no value (drawn as 'n/a'). */
  ratios: (number | null)[];
}

export interface Chart {
  title: string;
  subtitle: string;
  /** What the ratios are, along the vertical axis. */
  axis: string;
  series: ChartSeries[];
  groups: ChartGroup[];
  footnote?: string;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const fmtRatio = (r: number) =>
  (r >= 10 ? r.toFixed(0) : r >= 1 ? r.toFixed(1) : r >= 0.1 ? r.toFixed(2) : r.toPrecision(1)) + 'x';

export function renderChart(chart: Chart): string {
  const values = chart.groups
    .flatMap((g) => g.ratios)
    .filter((r): r is number => r !== null && r > 0 && Number.isFinite(r));
  let lo = Math.floor(Math.log2(Math.min(0.5, ...values)));
  let hi = Math.ceil(Math.log2(Math.max(2, ...values)));
  lo = Math.max(lo, -10);
  hi = Math.min(hi, 10);

  const barW = 18;
  const barGap = 3;
  const groupGap = 34;
  const groupW = chart.series.length * (barW + barGap) - barGap;
  const left = 70;
  const right = 20;
  const top = 78;
  const plotH = 360;
  const width = left + right + chart.groups.length * groupW + (chart.groups.length + 1) * groupGap;
  const height = top + plotH + 90 + (chart.footnote ? 20 : 0);
  const y = (ratio: number) => top + ((hi - Math.log2(ratio)) / (hi - lo)) * plotH;
  const y1 = y(1);

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
      `font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="${left}" y="24" font-size="16" font-weight="bold">${esc(chart.title)}</text>`,
    `<text x="${left}" y="42" fill="#555">${esc(chart.subtitle)}</text>`,
  );
  // legend
  let lx = left;
  for (const s of chart.series) {
    out.push(`<rect x="${lx}" y="54" width="12" height="12" fill="${s.color}"/>`);
    out.push(`<text x="${lx + 16}" y="64">${esc(s.name)}</text>`);
    lx += 26 + s.name.length * 7;
  }
  // grid: powers of two
  for (let e = lo; e <= hi; e++) {
    const gy = y(2 ** e);
    const label = e >= 0 ? `${2 ** e}x` : `1/${2 ** -e}x`;
    out.push(
      `<line x1="${left}" x2="${width - right}" y1="${gy}" y2="${gy}" stroke="${e === 0 ? '#333' : '#e3e3e3'}" stroke-width="${e === 0 ? 1.5 : 1}"/>`,
    );
    out.push(`<text x="${left - 8}" y="${gy + 4}" text-anchor="end" fill="#555">${label}</text>`);
  }
  out.push(
    `<text transform="translate(16 ${top + plotH / 2}) rotate(-90)" text-anchor="middle" fill="#555">${esc(chart.axis)}</text>`,
  );
  chart.groups.forEach((g, gi) => {
    const gx = left + groupGap + gi * (groupW + groupGap);
    g.ratios.forEach((r, si) => {
      const x = gx + si * (barW + barGap);
      const color = chart.series[si].color;
      if (r === null || !(r > 0) || !Number.isFinite(r)) {
        out.push(
          `<text x="${x + barW / 2}" y="${y1 - 4}" text-anchor="middle" font-size="9" fill="#888" transform="rotate(-90 ${x + barW / 2} ${y1 - 4})">n/a</text>`,
        );
        return;
      }
      const clamped = Math.min(2 ** hi, Math.max(2 ** lo, r));
      const yr = y(clamped);
      const yTop = Math.min(yr, y1);
      const h = Math.max(1, Math.abs(yr - y1));
      out.push(
        `<rect x="${x}" y="${yTop}" width="${barW}" height="${h}" fill="${color}"><title>${esc(chart.series[si].name)}: ${fmtRatio(r)}</title></rect>`,
      );
      const ty = r >= 1 ? yTop - 4 : yTop + h + 4;
      const anchor = r >= 1 ? 'start' : 'end';
      out.push(
        `<text x="${x + barW / 2 + 3}" y="${ty}" font-size="9" fill="#333" text-anchor="${anchor}" transform="rotate(-90 ${x + barW / 2 + 3} ${ty})">${fmtRatio(r)}</text>`,
      );
    });
    const cx = gx + groupW / 2;
    out.push(`<text x="${cx}" y="${top + plotH + 22}" text-anchor="middle" font-weight="bold">${esc(g.label)}</text>`);
    out.push(`<text x="${cx}" y="${top + plotH + 38}" text-anchor="middle" fill="#555">${esc(g.hint)}</text>`);
  });
  if (chart.footnote) {
    out.push(`<text x="${left}" y="${height - 12}" fill="#555" font-size="11">${esc(chart.footnote)}</text>`);
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}
