import fs from 'node:fs';
import path from 'node:path';
import pino, { type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * Creates the pino JSON logger of a service. With `file`, lines go to that file (created with its
 * folder) instead of stdout, so a launcher can keep one log file per service.
 */
export function createLogger(service: string, options: { file?: string; level?: string } = {}): Logger {
  const level = options.level ?? process.env.LOG_LEVEL ?? 'info';
  const base = { service };
  if (options.file) {
    fs.mkdirSync(path.dirname(options.file), { recursive: true });
    return pino({ level, base }, pino.destination({ dest: options.file, sync: true }));
  }
  return pino({ level, base });
}
