/**
 * Where a `node --cpu-prof` profile spent its time: self time per function and per file, and the
 * inclusive time of the functions matching `--grep`.
 *
 *   node --import tsx bench/profile-top.ts FILE.cpuprofile [--top 40] [--grep dataplane] [--last 10]
 *
 * `--last S` counts only the samples of the profile's last S seconds (the measured step of a
 * benchmark, without registration and warm-up).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { functionName: string; url: string; lineNumber: number };
  readonly children?: number[];
}
interface Profile { readonly nodes: ProfileNode[]; readonly samples: number[]; readonly timeDeltas: number[] }

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '40' }, grep: { type: 'string' }, last: { type: 'string' } } });
const file = positionals[0];
if (file === undefined) throw new Error('usage: profile-top.ts FILE.cpuprofile [--top N] [--grep TEXT]');
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const top = Number(values.top);

const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const selfUs = new Map<number, number>();
const spanUs = profile.timeDeltas.reduce((a, b) => a + b, 0);
const fromUs = values.last === undefined ? 0 : spanUs - Number(values.last) * 1e6;
let atUs = 0;
profile.samples.forEach((id, i) => {
  atUs += profile.timeDeltas[i] ?? 0;
  if (atUs >= fromUs) selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
});
const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
const idle = [...selfUs.entries()].filter(([id]) => byId.get(id)?.callFrame.functionName === '(idle)').reduce((a, [, t]) => a + t, 0);
const busy = total - idle;

const shortUrl = (url: string): string => url.replace(/^.*\/node_modules\//, '').replace(/^file:\/\/.*\/src\//, 'src/').replace(/^node:/, 'node:');
const label = (n: ProfileNode): string => `${n.callFrame.functionName || '(anonymous)'} ${shortUrl(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;

function printTop(title: string, totals: Map<string, number>): void {
  process.stdout.write(`\n${title} (% of busy time ${(busy / 1000).toFixed(0)} ms)\n`);
  for (const [name, us] of [...totals.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    process.stdout.write(`${((100 * us) / busy).toFixed(1).padStart(5)}%  ${name}\n`);
  }
}

const fnSelf = new Map<string, number>();
const fileSelf = new Map<string, number>();
for (const [id, us] of selfUs) {
  const node = byId.get(id);
  if (node === undefined || node.callFrame.functionName === '(idle)') continue;
  fnSelf.set(label(node), (fnSelf.get(label(node)) ?? 0) + us);
  const f = shortUrl(node.callFrame.url) || node.callFrame.functionName;
  fileSelf.set(f, (fileSelf.get(f) ?? 0) + us);
}
printTop('self time by function', fnSelf);
printTop('self time by file', fileSelf);

if (values.grep !== undefined) {
  // Inclusive time: each node's self time plus its descendants', counted once per matching label on the stack.
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclusive = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const node = byId.get(cur);
      if (node === undefined) break;
      const l = label(node);
      if (l.includes(values.grep) && !seen.has(l)) {
        seen.add(l);
        inclusive.set(l, (inclusive.get(l) ?? 0) + us);
      }
    }
  }
  printTop(`inclusive time of functions matching '${values.grep}'`, inclusive);
}
