// Profiles one ingestBookings run: time, peak RSS and DuckDB memory per SQL statement, and the time of
// the file's SHA-256. It wraps the @duckdb/node-api classes inside this process only, so product code
// runs unchanged.
// Usage: node --import tsx bench/profile-ingest.ts CSV CATALOG_DIR [--duckdb-option NAME=VALUE ...]
//
// --duckdb-option adds a DuckDB configuration option to the instance that ingestBookings opens (for
// example threads=1, preserve_insertion_order=false or memory_limit=1GB), to measure what a setting
// would change before proposing it.
import { parseArgs } from 'node:util';
import { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { ingestBookings, sha256File, type IngestInput } from '../activities/ingestion';
import type { IngestResult } from '../workflows/types';
import { quietActivityEnvironment, testSpec } from '../test/helpers/fixtures';

/** Interval between RSS samples while a statement runs, in milliseconds. */
const SAMPLE_MS = 10;

interface Step {
  sql: string;
  startSeconds: number;
  seconds: number;
  peakRssMiB: number;
  duckdbMiB: number;
}

const MIB = 1024 * 1024;

function secondsSince(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** Adds `options` to every DuckDBInstance.create call in this process. */
function addInstanceOptions(options: Record<string, string>): void {
  const create = DuckDBInstance.create.bind(DuckDBInstance);
  DuckDBInstance.create = (path?: string, config?: Record<string, string>) => create(path, { ...config, ...options });
}

/** Records time, peak RSS and DuckDB memory of every statement run on any connection. */
function recordStatements(steps: Step[], start: bigint): void {
  const run = DuckDBConnection.prototype.run;
  DuckDBConnection.prototype.run = async function (this: DuckDBConnection, sql: string, ...rest: []) {
    let peak = process.memoryUsage.rss();
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage.rss());
    }, SAMPLE_MS);
    const startSeconds = secondsSince(start);
    try {
      return await run.call(this, sql, ...rest);
    } finally {
      clearInterval(sampler);
      const seconds = secondsSince(start) - startSeconds;
      peak = Math.max(peak, process.memoryUsage.rss());
      // duckdb_memory() returns the bytes that DuckDB uses per memory tag (checked with DuckDB 1.5.6).
      const memory = await run.call(this, 'SELECT sum(memory_usage_bytes)::DOUBLE AS bytes FROM duckdb_memory()');
      const bytes = Number((await memory.getRowObjectsJS())[0].bytes);
      steps.push({ sql: sql.replace(/\s+/g, ' ').trim(), startSeconds, seconds, peakRssMiB: peak / MIB, duckdbMiB: bytes / MIB });
    }
  };
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { 'duckdb-option': { type: 'string', multiple: true, default: [] } },
  });
  const [file, catalogDir] = positionals;
  if (!file || !catalogDir) {
    console.error('Usage: node --import tsx bench/profile-ingest.ts CSV CATALOG_DIR [--duckdb-option NAME=VALUE ...]');
    process.exit(2);
  }
  const options: Record<string, string> = {};
  for (const option of values['duckdb-option']) {
    const [name, value] = option.split('=');
    if (!name || value === undefined) throw new Error(`Invalid --duckdb-option ${option}: use NAME=VALUE.`);
    options[name] = value;
  }
  addInstanceOptions(options);

  const hashStart = process.hrtime.bigint();
  await sha256File(file);
  const hashSeconds = secondsSince(hashStart);

  const steps: Step[] = [];
  const spec = testSpec(file);
  const input: IngestInput = { sourcePath: file, catalog: spec.catalog, schema: spec.schema, spec: spec.ingest };
  const start = process.hrtime.bigint();
  recordStatements(steps, start);
  const result = (await quietActivityEnvironment().run(ingestBookings, catalogDir, input)) as IngestResult;
  const totalSeconds = secondsSince(start);
  if (result.reused) throw new Error(`Catalog ${catalogDir} already had tables from ${file}. Pass an empty catalog folder.`);

  console.log(`DuckDB options added: ${JSON.stringify(options)}`);
  console.log(`SHA-256 of the file, measured separately: ${hashSeconds.toFixed(3)} s`);
  console.log(`Before the first statement (SHA-256, catalog look-up, DuckDB start): ${steps[0].startSeconds.toFixed(3)} s`);
  console.log('| s | peak RSS MiB | DuckDB MiB after | statement |');
  console.log('| ---: | ---: | ---: | --- |');
  for (const step of steps) {
    console.log(`| ${step.seconds.toFixed(3)} | ${step.peakRssMiB.toFixed(0)} | ${step.duckdbMiB.toFixed(0)} | ${step.sql.slice(0, 110)} |`);
  }
  const inStatements = steps.reduce((sum, step) => sum + step.seconds, 0);
  console.log(`Statements: ${inStatements.toFixed(3)} s of ${totalSeconds.toFixed(3)} s in ingestBookings.`);
  console.log(`Peak RSS of the process: ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB.`);
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
