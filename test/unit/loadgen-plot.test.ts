import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renderLineChart } from '../../src/loadgen/plot.ts';

/** Checks that every element opened is closed in order (self-closing ones need nothing). */
function assertWellFormed(svg: string): void {
  const stack: string[] = [];
  for (const match of svg.matchAll(/<(\/?)([a-z]+)\b[^>]*?(\/?)>/g)) {
    const [, closing, name, selfClosing] = match;
    if (selfClosing === '/') continue;
    if (closing === '/') assert.equal(stack.pop(), name, `unbalanced </${name}>`);
    else stack.push(name ?? '');
  }
  assert.deepEqual(stack, []);
}

const sweep = {
  title: 'Cold-start sweep <emulated>',
  xLabel: 'cold starts per second',
  yLabel: 'latency (ms)',
  series: [
    { name: 'p50', points: [{ x: 1, y: 12 }, { x: 10, y: 14 }, { x: 100, y: 20 }] },
    { name: 'p99', points: [{ x: 1, y: 30 }, { x: 10, y: 45 }, { x: 100, y: 120 }, { x: 1000, y: 900 }] },
  ],
};

describe('renderLineChart', () => {
  it('draws one polyline per series and one circle per point, with title, labels and legend', () => {
    const svg = renderLineChart({ ...sweep, xScale: 'log', yScale: 'log' });
    assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    assert.ok(svg.trimEnd().endsWith('</svg>'));
    assertWellFormed(svg);
    const polylines = [...svg.matchAll(/<polyline [^>]*points="([^"]*)"/g)].map((m) => (m[1] ?? '').split(' ').length);
    assert.deepEqual(polylines, [3, 4]);
    assert.equal(svg.match(/<circle /g)?.length, 7);
    assert.ok(svg.includes('Cold-start sweep &lt;emulated&gt;'));
    assert.ok(svg.includes('>cold starts per second<') && svg.includes('>latency (ms)<'));
    assert.ok(svg.includes('>p50<') && svg.includes('>p99<'));
    for (const tick of ['>1<', '>10<', '>100<', '>1000<']) assert.ok(svg.includes(tick), `tick ${tick}`);
  });

  it('places log-axis points by decade: 1, 10, 100 are evenly spaced', () => {
    const svg = renderLineChart({ ...sweep, series: [sweep.series[0]!], xScale: 'log' });
    const xs = [...svg.matchAll(/<circle cx="([\d.]+)"/g)].map((m) => Number(m[1]));
    assert.equal(xs.length, 3);
    assert.ok(Math.abs((xs[1]! - xs[0]!) - (xs[2]! - xs[1]!)) < 0.05);
  });

  it('drops points that a log axis cannot show and non-finite ones', () => {
    const svg = renderLineChart({
      ...sweep, yScale: 'log',
      series: [{ name: 'p50', points: [{ x: 0, y: 0 }, { x: 1, y: 5 }, { x: 2, y: Number.NaN }, { x: 3, y: 7 }] }],
    });
    assert.equal(svg.match(/<circle /g)?.length, 2);
    assertWellFormed(svg);
  });

  it('draws linear axes with round ticks, and copes with no points', () => {
    const svg = renderLineChart({ ...sweep, series: [{ name: 'p50', points: [{ x: 3, y: 3 }, { x: 97, y: 97 }] }] });
    for (const tick of ['>0<', '>20<', '>100<']) assert.ok(svg.includes(tick), `tick ${tick}`);
    assertWellFormed(renderLineChart({ ...sweep, series: [] }));
  });
});
