// `npm run fuzz -- --seconds N`: runs the fuzz properties (test/integration/fuzz-*.test.ts) for
// N seconds each instead of their bounded number of runs in `npm test`.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';

const args = process.argv.slice(2);
const at = args.indexOf('--seconds');
const seconds = at >= 0 ? Number(args[at + 1]) : 60;
if (!(seconds > 0)) {
  process.stderr.write('usage: npm run fuzz -- --seconds N\n');
  process.exit(2);
}
const dir = path.join(import.meta.dirname, '..', 'integration');
const files = readdirSync(dir).filter((f) => f.startsWith('fuzz-') && f.endsWith('.test.ts')).map((f) => path.join(dir, f));
const result = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=spec', ...files], {
  stdio: 'inherit', env: { ...process.env, BATON_FUZZ_SECONDS: String(seconds) },
});
process.exit(result.status ?? 1);
