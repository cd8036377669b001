// Runs ingestBookings once on a CSV into a catalog folder, so a parent process can measure this
// process's wall time and peak memory (DuckDB's native memory counts in the process's RSS).
// Usage: node --import tsx bench/ingest-once.ts CSV CATALOG_DIR [--careful]
// --careful skips the one-pass path, to measure the path a file with problems takes.
//
// Prints one JSON line: row counts per table, quality counts, the seconds ingestBookings took (module loading
// excluded), and the process's peak resident set size in KiB.
import { Context, asyncLocalStorage, type Info } from '@temporalio/activity';
import { ingestBookings, type IngestInput } from '../activities/ingestion';
import { buildPipelineSpec, loadProjectConfig } from '../config/load';
import type { IngestResult } from '../workflows/types';

/**
 * Runs `fn` inside a bare activity context with a silent logger. The test helper
 * MockActivityEnvironment would load the whole Temporal worker (0.5 s), which a worker that runs
 * this activity has loaded long before, so it would distort the wall time.
 */
function inActivityContext<T>(fn: () => Promise<T>): Promise<T> {
  const silent = { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} };
  const meter = { createCounter: () => ({ add() {} }), createHistogram: () => ({ record() {} }), createGauge: () => ({ set() {} }) };
  const context = new Context(
    { activityType: 'ingestBookings', attempt: 1 } as Info,
    new Promise<never>(() => {}),
    new AbortController().signal,
    () => {},
    undefined,
    silent as never,
    meter as never,
    { details: undefined } as never,
  );
  return asyncLocalStorage.run(context, fn);
}

async function main(): Promise<void> {
  const [file, catalogDir, flag] = process.argv.slice(2);
  if (!file || !catalogDir) {
    console.error('Usage: node --import tsx bench/ingest-once.ts CSV CATALOG_DIR [--careful]');
    process.exit(2);
  }
  const spec = buildPipelineSpec(loadProjectConfig(), { env: 'dev', sourcePath: file, gitSha: 'bench', branch: 'bench' });
  const input: IngestInput = { sourcePath: file, catalog: spec.catalog, schema: spec.schema, spec: spec.ingest };

  const start = process.hrtime.bigint();
  const onePass = flag !== '--careful';
  const result: IngestResult = await inActivityContext(() => ingestBookings(catalogDir, input, { onePass }));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;

  if (result.reused) {
    // A reused result wrote nothing, so its time would not measure ingestion.
    console.error(`Catalog ${catalogDir} already had tables from ${file}. Pass an empty catalog folder.`);
    process.exit(1);
  }
  const { report } = result;
  console.log(
    JSON.stringify({
      rowsIn: report.rowsIn,
      train: report.rowsTrain,
      test: report.rowsTest,
      extra: report.rowsExtra,
      normalised: report.arrivalDatesNormalised,
      trimmed: report.valuesTrimmed,
      duplicatesIgnoringId: report.duplicateRowsIgnoringId,
      checks: report.checks,
      seconds: Number(seconds.toFixed(3)),
      maxRssKiB: process.resourceUsage().maxRSS,
    }),
  );
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
