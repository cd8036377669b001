// Runs ingestBookings once on a CSV into a catalog folder, so a parent process can measure this
// process's wall time and peak memory (DuckDB's native memory counts in the process's RSS).
// Usage: node --import tsx bench/ingest-once.ts CSV CATALOG_DIR
//
// Prints one JSON line: row counts per table, quality counts, the seconds ingestBookings took (module loading
// excluded), and the process's peak resident set size in KiB.
import { ingestBookings, type IngestInput } from '../activities/ingestion';
import type { IngestResult } from '../workflows/types';
import { quietActivityEnvironment, testSpec } from '../test/helpers/fixtures';

async function main(): Promise<void> {
  const [file, catalogDir] = process.argv.slice(2);
  if (!file || !catalogDir) {
    console.error('Usage: node --import tsx bench/ingest-once.ts CSV CATALOG_DIR');
    process.exit(2);
  }
  const spec = testSpec(file);
  const input: IngestInput = { sourcePath: file, catalog: spec.catalog, schema: spec.schema, spec: spec.ingest };

  const start = process.hrtime.bigint();
  const result = (await quietActivityEnvironment().run(ingestBookings, catalogDir, input)) as IngestResult;
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
      seconds: Number(seconds.toFixed(3)),
      maxRssKiB: process.resourceUsage().maxRSS,
    }),
  );
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
