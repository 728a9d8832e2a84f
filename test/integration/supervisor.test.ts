import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { RestartBackoff, Supervisor } from '../../src/cli/supervisor.ts';
import { isAlive } from '../kit/process.ts';
import { ManualClock } from '../kit/manual-clock.ts';
import { waitFor } from '../kit/wait-for.ts';

/** Real child processes; time (back-off, uptime) from a ManualClock. */
const longRunning = () => spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
const crashing = () => spawn(process.execPath, ['-e', 'process.exit(3)'], { stdio: 'ignore' });

function setup(t: TestContext) {
  const clock = new ManualClock(0);
  const lines: string[] = [];
  const supervisor = new Supervisor({ clock, report: (line) => lines.push(line), policy: { initialDelayMs: 200, maxDelayMs: 1_600, stableAfterMs: 10_000 } });
  t.after(() => supervisor.stop());
  return { clock, lines, supervisor };
}

test('back-off: doubles per crash in a row up to the cap, and starts over after a run that lasted', () => {
  const backoff = new RestartBackoff({ initialDelayMs: 200, maxDelayMs: 1_600, stableAfterMs: 10_000 });
  assert.deepEqual([0, 5, 5, 5, 5, 5].map((uptime) => backoff.delayAfter(uptime)), [200, 400, 800, 1600, 1600, 1600]);
  assert.equal(backoff.delayAfter(10_000), 200, 'a healthy run resets it');
  assert.equal(backoff.delayAfter(1), 400);
  assert.throws(() => new RestartBackoff({ initialDelayMs: 500, maxDelayMs: 100 }), /invalid restart policy/);
});

test('a daemon killed with SIGKILL is restarted after its back-off while the others keep running', async (t) => {
  const { clock, lines, supervisor } = setup(t);
  const a = supervisor.add('a', longRunning);
  const b = supervisor.add('b', longRunning);
  a.kill('SIGKILL');
  await waitFor(() => clock.pendingTimers === 1, { message: 'a restart to be scheduled' });
  assert.equal(supervisor.current('a'), undefined, 'a is down, waiting for its restart');
  assert.match(lines[0] ?? '', /^a \(pid \d+\) exited on SIGKILL after 0 ms; restarting it in 200 ms$/);
  clock.advance(199);
  assert.equal(supervisor.restarts('a'), 0);
  clock.advance(1);
  assert.equal(supervisor.restarts('a'), 1);
  const restarted = supervisor.current('a');
  assert.ok(restarted !== undefined && restarted.pid !== a.pid && isAlive(restarted.pid as number));
  assert.equal(supervisor.current('b'), b, 'b was never touched');
  assert.ok(isAlive(b.pid as number));
  assert.match(lines[1] ?? '', /^a restarted \(pid \d+, restart 1\)$/);
});

test('a daemon that crashes on every start is retried ever more slowly, up to the cap', async (t) => {
  const { clock, supervisor } = setup(t);
  supervisor.add('c', crashing);
  const delays: number[] = [];
  for (let i = 0; i < 5; i++) {
    await waitFor(() => clock.pendingTimers === 1, { message: `crash ${i + 1} to be seen` });
    const before = clock.now();
    let waited = 0;
    while (supervisor.restarts('c') === i) {
      clock.advance(100);
      waited += 100;
    }
    delays.push(waited);
    assert.equal(clock.now() - before, waited);
  }
  assert.deepEqual(delays, [200, 400, 800, 1600, 1600]);
});

test('stop ends every daemon, the last added first, and cancels a restart that was due', async (t) => {
  const { clock, supervisor } = setup(t);
  const a = supervisor.add('a', longRunning);
  const b = supervisor.add('b', longRunning);
  const order: string[] = [];
  a.once('exit', () => order.push('a'));
  b.once('exit', () => order.push('b'));
  const c = supervisor.add('c', longRunning);
  c.kill('SIGKILL');
  await waitFor(() => clock.pendingTimers === 1, { message: 'c to be scheduled for a restart' });
  await supervisor.stop();
  assert.deepEqual(order, ['b', 'a']);
  clock.advance(10_000);
  assert.equal(supervisor.restarts('c'), 0, 'no restart after stop');
  assert.equal(clock.pendingTimers, 0);
  assert.ok(!isAlive(a.pid as number) && !isAlive(b.pid as number));
});
