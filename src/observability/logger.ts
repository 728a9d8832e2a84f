import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/** The root logger of a daemon: pino JSON on stdout. Components take children with their own fields. */
export function createLogger(options: { name: string; level?: LevelWithSilent }): Logger {
  return pino({ name: options.name, level: options.level ?? 'info', base: { plane: options.name } });
}

/** A logger that writes nothing, for tests and embedded use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
