/**
 * bench:placement — what one placement costs, per policy and cluster size. Placement runs for every
 * cold start and looks at every worker, so its cost per worker is what a large cluster pays per
 * cold start. Workers are the control plane's own worker entries (`newWorkerEntry`), all ready,
 * with room, and unevenly allocated so that scores differ.
 *
 *   npm run bench:placement -- --workers 100,1000 --placements 50000
 */
import { parseArgs } from 'node:util';
import { newWorkerEntry } from '../src/controlplane/model.ts';
import { createRandom } from '../src/core/random.ts';
import { createPlacementPolicy, PLACEMENT_POLICIES, type PlacementRequest } from '../src/policy/placement/index.ts';

const { values } = parseArgs({
  options: {
    workers: { type: 'string', default: '100,1000' },
    placements: { type: 'string', default: '50000' },
  },
});
const sizes = values.workers.split(',').map(Number);
const placements = Number(values.placements);
if (sizes.some((n) => !Number.isInteger(n) || n <= 0) || !Number.isInteger(placements) || placements <= 0) {
  throw new Error('--workers takes positive integers, --placements a positive integer');
}

const request: PlacementRequest = { function: 'f', runtime: 'emulated', artifact: undefined, resources: { cpuMilli: 1, memoryMiB: 1 }, count: 1 };
process.stdout.write('workers  policy              µs per placement\n');
for (const n of sizes) {
  const workers = Array.from({ length: n }, (_, i) => {
    const worker = newWorkerEntry({ id: `w${i}`, url: `http://127.0.0.1:${10_000 + i}`, capacity: { cpuMilli: 100_000, memoryMiB: 100_000 }, runtimes: ['emulated'], state: 'ready', nowMs: 0 });
    worker.allocated.cpuMilli = (i * 37) % 5_000;
    worker.allocated.memoryMiB = (i * 53) % 5_000;
    return worker;
  });
  for (const name of PLACEMENT_POLICIES) {
    const policy = createPlacementPolicy(name, { random: createRandom(1) });
    // Warm-up, so that the measured calls run optimised code. Placing changes nothing: the policy
    // only decides, and the allocations stay as they are.
    for (let i = 0; i < Math.min(placements, 20_000); i++) policy.place(request, workers);
    const started = performance.now();
    for (let i = 0; i < placements; i++) policy.place(request, workers);
    const us = ((performance.now() - started) * 1000) / placements;
    process.stdout.write(`${String(n).padStart(7)}  ${name.padEnd(18)}  ${us.toFixed(2).padStart(8)}\n`);
  }
}
