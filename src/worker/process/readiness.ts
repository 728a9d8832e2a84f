import { connect } from 'node:net';
import type { Readable } from 'node:stream';
import type { Clock, Timer } from '../../core/clock.ts';

/**
 * Resolves when `pipe` (the runner's fd 3) carries a `ready` line; never resolves otherwise (the
 * caller races it with exit, timeout and abort). Returns a function that stops listening.
 */
export function waitForReadyLine(pipe: Readable, onReady: () => void): () => void {
  let text = '';
  const onData = (chunk: Buffer): void => {
    text += chunk.toString('utf8');
    if (text.includes('ready\n')) {
      stop();
      onReady();
    } else if (text.length > 1024) {
      text = text.slice(-16);
    }
  };
  const stop = (): void => {
    pipe.off('data', onData);
  };
  pipe.on('data', onData);
  return stop;
}

/**
 * Probes `host:port` with TCP connects until one succeeds, then calls `onReady`. The first retry
 * comes after 2 ms and each later one 1.5× later, capped at 50 ms (2, 3, 4.5, 6.75, … 50, 50 ms):
 * a server that takes 30 ms to listen is seen within a few ms, and a slow one costs 20 probes/s.
 * Returns a function that stops probing.
 */
export function probeTcp(host: string, port: number, clock: Clock, onReady: () => void): () => void {
  let delayMs = 2;
  let isStopped = false;
  let timer: Timer | undefined;
  const attempt = (): void => {
    if (isStopped) return;
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      if (isStopped) return;
      isStopped = true;
      onReady();
    });
    socket.once('error', () => {
      socket.destroy();
      if (isStopped) return;
      timer = clock.setTimeout(attempt, delayMs);
      delayMs = Math.min(50, delayMs * 1.5);
    });
  };
  attempt();
  return () => {
    isStopped = true;
    timer?.cancel();
  };
}
