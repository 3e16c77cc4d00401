// Small SVG line charts (sparklines) of a series of figures, with the latest figure as text for
// screen readers. Must not: fetch anything.

const NS = 'http://www.w3.org/2000/svg';
const W = 120;
const H = 28;

/** A chart element for `label`; update it with `draw(svg, values, text)`. */
export function sparkline(label) {
  const wrap = document.createElement('span');
  wrap.className = 'spark';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('width', W);
  svg.setAttribute('height', H);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  const line = document.createElementNS(NS, 'polyline');
  line.setAttribute('fill', 'none');
  line.setAttribute('stroke-width', '1.5');
  svg.appendChild(line);
  const value = document.createElement('span');
  value.className = 'spark-value';
  wrap.append(svg, value);
  return wrap;
}

/** Redraws `wrap` (from sparkline) with `values` (oldest first) and the latest as `text`. */
export function draw(wrap, values, text) {
  const svg = wrap.firstChild;
  const line = svg.firstChild;
  // A figure missing from a sample (NaN) is left out of the line, not drawn as a zero.
  const max = Math.max(1e-9, ...values.filter(Number.isFinite));
  const step = values.length > 1 ? W / (values.length - 1) : 0;
  const points = values.flatMap((v, i) => Number.isFinite(v) ? [`${(i * step).toFixed(1)},${(H - 2 - (v / max) * (H - 4)).toFixed(1)}`] : []);
  line.setAttribute('points', points.join(' '));
  wrap.lastChild.textContent = text;
  svg.setAttribute('aria-label', svg.getAttribute('aria-label').split(':')[0] + ': ' + text);
}
