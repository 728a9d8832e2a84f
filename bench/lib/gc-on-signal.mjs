// Loaded into a daemon by bench:scale (node --expose-gc --import this-file): SIGUSR2 runs a full
// garbage collection, so that a heap reading taken right after it counts live objects only.
process.on('SIGUSR2', () => {
  globalThis.gc?.();
});
