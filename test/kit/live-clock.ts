import type { Clock } from '../../src/core/clock.ts';

/**
 * Real time with timers that keep the test process alive (the daemons' clock unrefs its timers;
 * their servers keep the process up). For components doing real I/O under test, e.g. the async log.
 */
export const liveClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => {
    const handle = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(handle) };
  },
  defer: (fn) => {
    setImmediate(fn);
  },
};
