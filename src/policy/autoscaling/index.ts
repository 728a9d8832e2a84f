export { computeDesiredScale, initialKpaState, kpaSettingsFromSpec } from './kpa.ts';
export { ConcurrencyWindow } from './window.ts';
export type { ConcurrencyWindowOptions } from './window.ts';
export { INITIAL_KPA_STATE } from './types.ts';
export type { KpaDecision, KpaInput, KpaSettings, KpaState } from './types.ts';
