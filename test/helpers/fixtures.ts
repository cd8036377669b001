import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openDuckDB } from '../../activities/ingestion';
import { BOOKING_COLUMNS, generateBookings } from '../../activities/synthetic';
import { buildPipelineSpec, loadProjectConfig } from '../../config/load';
import type { PipelineSpec } from '../../workflows/types';

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
}

/** Writes a bookings CSV from the synthetic generator, after `edit` has changed the rows if given. */
export function writeBookings(
  dir: string,
  name: string,
  options: { rows?: number; seed?: number; columns?: string[]; edit?: (rows: string[][]) => void } = {},
): string {
  const rows = generateBookings(options.rows ?? 400, options.seed ?? 7);
  options.edit?.(rows);
  const columns = options.columns ?? BOOKING_COLUMNS;
  const indexes = columns.map((c) => BOOKING_COLUMNS.indexOf(c));
  const lines = [columns.join(','), ...rows.map((row) => indexes.map((i) => row[i]).join(','))];
  const file = path.join(dir, name);
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

export function column(name: string): number {
  return BOOKING_COLUMNS.indexOf(name);
}

export function testSpec(
  sourcePath: string,
  serving: Partial<PipelineSpec['serving']> = {},
  variants?: string[],
): PipelineSpec {
  return buildPipelineSpec(loadProjectConfig(), { env: 'dev', sourcePath, gitSha: 'test-sha', branch: 'test', serving, variants });
}

/** Returns the real dataset path when HOTEL_DATA_CSV names an existing file, else undefined. */
export function realDataPath(): string | undefined {
  const file = process.env.HOTEL_DATA_CSV;
  return file && fs.existsSync(file) ? path.resolve(file) : undefined;
}

/** Activity environment whose SDK log lines are dropped, so test output shows only test results. */
export function quietActivityEnvironment(): MockActivityEnvironment {
  return new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR', () => undefined) });
}

/** Runs one SQL query in a fresh in-memory DuckDB and returns its rows as JSON values. */
export async function queryRows(sql: string): Promise<Record<string, unknown>[]> {
  const { instance, connection } = await openDuckDB();
  try {
    return (await connection.runAndReadAll(sql)).getRowObjectsJson() as Record<string, unknown>[];
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}
