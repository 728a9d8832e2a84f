// Loaded into a daemon by bench:scale (node --expose-gc --import this-file): SIGUSR2 runs a full
// garbage collection and, at once, writes the heap then in use as one JSON line on stderr:
//   {"msg":"heap after gc","seq":0,"heapUsedBytes":…}   (seq counts the readings from 0)
// (process.memoryUsage().heapUsed, the figure the daemon's nodejs_heap_size_used_bytes gauge
// shows). It is written in the same turn as the collection because a daemon keeps allocating: with
// 1,000 workers heartbeating, half a second later the heap holds megabytes of new garbage.
let seq = 0;
process.on('SIGUSR2', () => {
  globalThis.gc?.();
  process.stderr.write(`${JSON.stringify({ msg: 'heap after gc', seq: seq++, heapUsedBytes: process.memoryUsage().heapUsed })}\n`);
});
