import { Registry, collectDefaultMetrics } from 'prom-client';

/** One registry per process, with Node's default process metrics prefixed by the plane. */
export function createRegistry(plane: string, options: { withDefaults?: boolean } = {}): Registry {
  const registry = new Registry();
  if (options.withDefaults ?? true) collectDefaultMetrics({ register: registry, prefix: `baton_${plane}_` });
  return registry;
}

/** Cold-start phases shared by the worker and control-plane histograms. */
export const COLD_START_BUCKETS_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
