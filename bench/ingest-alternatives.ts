// Times parts of the ingestion SQL and alternative formulations of them on one CSV, to put numbers
// on proposed changes to activities/ingestion.ts without editing it. Every query is built from the
// product's SQL helpers (readRawSql, cleanSelectSql, isTestSql, arrivalDateSql, realDateSql), so the
// expressions match what ingestBookings runs.
//
// Usage: node --import tsx bench/ingest-alternatives.ts CSV OUT_DIR MODE
//   MODE steps:              load the raw table as ingestBookings does, then time each part separately
//   MODE single-pass:        one COPY from the CSV to Parquet files partitioned by table, with no
//                            temp tables and no sort; the validation checks are not run
//   MODE single-pass-sorted: the same, with the rows sorted by booking id as ingestBookings writes them
// Run a mode under `/usr/bin/time -v` for its peak RSS; each prints seconds per part as JSON lines.
import fs from 'node:fs';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { readCsvHeader } from '../activities/csv-header';
import { openDuckDB } from '../activities/ingestion';
import {
  arrivalDateSql,
  cleanSelectSql,
  isTestSql,
  quoteIdent,
  quoteLiteral,
  readRawSql,
  realDateSql,
  renamed,
  requiredColumns,
} from '../activities/ingestion-sql';
import { DUCKDB } from '../activities/sql-dialect';
import type { IngestSpec } from '../workflows/types';
import { testSpec } from '../test/helpers/fixtures';

const MODES = ['steps', 'single-pass', 'single-pass-sorted'] as const;
type Mode = (typeof MODES)[number];

async function timed(connection: DuckDBConnection, label: string, sql: string): Promise<void> {
  const start = process.hrtime.bigint();
  await connection.runAndReadAll(sql);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(JSON.stringify({ part: label, seconds: Number(seconds.toFixed(3)) }));
}

/** Builds one aggregate over `raw` that computes every row check of ingestBookings in a single scan. */
function oneScanValidationSql(spec: IngestSpec): string {
  const q = quoteIdent;
  const known = Object.keys(spec.target.values).map(quoteLiteral).join(', ');
  const target = q(spec.target.name);
  const counts = [`count(*) FILTER (WHERE ${target} IS NULL OR trim(${target}) NOT IN (${known})) AS unknown_target`];
  for (const feature of spec.numericFeatures) {
    const column = q(feature.name);
    counts.push(
      `count(*) FILTER (WHERE TRY_CAST(trim(${column}) AS ${DUCKDB.numericType(feature.dtype)}) IS NULL) AS ${q(`bad_${feature.name}`)}`,
    );
    const bounds = [
      ...(feature.min === undefined ? [] : [`TRY_CAST(trim(${column}) AS DOUBLE) < ${feature.min}`]),
      ...(feature.max === undefined ? [] : [`TRY_CAST(trim(${column}) AS DOUBLE) > ${feature.max}`]),
    ];
    if (bounds.length > 0) counts.push(`count(*) FILTER (WHERE ${bounds.join(' OR ')}) AS ${q(`range_${feature.name}`)}`);
  }
  for (const name of [spec.idColumn, ...spec.categoricalFeatures]) {
    counts.push(`count(*) FILTER (WHERE ${q(name)} IS NULL OR trim(${q(name)}) = '') AS ${q(`empty_${name}`)}`);
  }
  counts.push(`count(*) - count(DISTINCT trim(${q(spec.idColumn)})) AS duplicate_ids`);
  return `SELECT ${counts.join(',\n  ')} FROM raw`;
}

/** Builds the table name of each cleaned row, as the three selections of ingestBookings assign it. */
function tableCaseSql(spec: IngestSpec): string {
  const segment = quoteIdent(renamed(spec, spec.trainingSegment.column));
  const inSegment = `${segment} = ${quoteLiteral(spec.trainingSegment.value)}`;
  return `CASE WHEN NOT (${inSegment}) THEN 'extra' WHEN _is_test THEN 'test' ELSE 'train' END`;
}

async function runSteps(connection: DuckDBConnection, file: string, outDir: string, spec: IngestSpec): Promise<void> {
  const header = readCsvHeader(file);
  const q = quoteIdent;
  await timed(connection, 'read CSV into raw, all columns VARCHAR (as ingestBookings)', readRawSql(file, header.columns, header.delimiter));

  const typedColumns = header.columns
    .map((name) => {
      const feature = spec.numericFeatures.find((f) => f.name === name);
      return `${quoteLiteral(name)}: '${feature ? DUCKDB.numericType(feature.dtype) : 'VARCHAR'}'`;
    })
    .join(', ');
  await timed(
    connection,
    'read CSV into raw_typed, numeric columns typed',
    `CREATE TEMP TABLE raw_typed AS SELECT * FROM read_csv(${quoteLiteral(file)}, auto_detect = false, header = true,
       delim = ${quoteLiteral(header.delimiter)}, quote = '"', escape = '"', columns = {${typedColumns}})`,
  );
  await connection.run('DROP TABLE raw_typed');

  await timed(connection, 'all row checks in one scan', oneScanValidationSql(spec));
  await timed(
    connection,
    'duplicate ids: GROUP BY trim(id) HAVING count(*) > 1 (as ingestBookings)',
    `SELECT trim(${q(spec.idColumn)}) AS id, count(*) AS n FROM raw GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT 5`,
  );

  const numericCasts = spec.numericFeatures
    .map((f) => `max(CAST(trim(${q(f.name)}) AS ${DUCKDB.numericType(f.dtype)}))`)
    .join(', ');
  await timed(connection, 'expression: numeric casts of all columns', `SELECT ${numericCasts} FROM raw`);
  await timed(
    connection,
    'expression: md5 test split',
    `SELECT count(*) FILTER (WHERE ${isTestSql(`trim(${q(spec.idColumn)})`, spec.testFraction)}) FROM raw`,
  );
  await timed(
    connection,
    'expression: arrival date roll-forward',
    `SELECT max(${arrivalDateSql('arrival_year', 'arrival_month', 'arrival_date')}) FROM raw`,
  );
  await timed(
    connection,
    'expression: real-date test',
    `SELECT count(*) FILTER (WHERE NOT ${realDateSql('arrival_year', 'arrival_month', 'arrival_date')}) FROM raw`,
  );

  const otherColumns = requiredColumns(spec)
    .filter((c) => c !== spec.idColumn)
    .map(q)
    .join(', ');
  await timed(
    connection,
    'quality: rows duplicated apart from the id, DISTINCT over raw text (as ingestBookings)',
    `SELECT count(*) FROM (SELECT DISTINCT ${otherColumns} FROM raw)`,
  );

  const ingestedAt = new Date().toISOString();
  await timed(connection, 'CREATE TEMP TABLE clean (as ingestBookings)', `CREATE TEMP TABLE clean AS ${cleanSelectSql(spec, ingestedAt)}`);
  await timed(connection, 'DROP TABLE raw after clean', 'DROP TABLE raw');

  const id = q(renamed(spec, spec.idColumn));
  await timed(
    connection,
    'one COPY of clean, partitioned by table, sorted by id',
    `COPY (SELECT * EXCLUDE (_date_normalised, _is_test), ${tableCaseSql(spec)} AS _table FROM clean ORDER BY ${id})
     TO ${quoteLiteral(path.join(outDir, 'sorted'))} (FORMAT parquet, PARTITION_BY (_table))`,
  );
  await timed(
    connection,
    'one COPY of clean, partitioned by table, unsorted',
    `COPY (SELECT * EXCLUDE (_date_normalised, _is_test), ${tableCaseSql(spec)} AS _table FROM clean)
     TO ${quoteLiteral(path.join(outDir, 'unsorted'))} (FORMAT parquet, PARTITION_BY (_table))`,
  );
}

async function runSinglePass(connection: DuckDBConnection, file: string, outDir: string, spec: IngestSpec, sorted: boolean): Promise<void> {
  const header = readCsvHeader(file);
  // The same read as ingestBookings, but as a view, so the rows stream through the COPY.
  const readView = readRawSql(file, header.columns, header.delimiter).replace('CREATE TEMP TABLE raw', 'CREATE TEMP VIEW raw');
  await connection.run(readView);
  const id = quoteIdent(renamed(spec, spec.idColumn));
  const order = sorted ? `ORDER BY ${id}` : '';
  await timed(
    connection,
    `single COPY from the CSV to Parquet partitioned by table, ${sorted ? 'sorted by id' : 'unsorted'}`,
    `COPY (SELECT * EXCLUDE (_date_normalised, _is_test), ${tableCaseSql(spec)} AS _table
           FROM (${cleanSelectSql(spec, new Date().toISOString())}) ${order})
     TO ${quoteLiteral(outDir)} (FORMAT parquet, PARTITION_BY (_table))`,
  );
}

async function main(): Promise<void> {
  const [file, outDir, mode] = process.argv.slice(2) as [string, string, Mode];
  if (!file || !outDir || !MODES.includes(mode)) {
    console.error(`Usage: node --import tsx bench/ingest-alternatives.ts CSV OUT_DIR ${MODES.join('|')}`);
    process.exit(2);
  }
  fs.mkdirSync(outDir, { recursive: true });
  const spec = testSpec(file).ingest;
  const { instance, connection } = await openDuckDB();
  const start = process.hrtime.bigint();
  try {
    if (mode === 'steps') await runSteps(connection, file, outDir, spec);
    else await runSinglePass(connection, file, outDir, spec, mode === 'single-pass-sorted');
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(JSON.stringify({ part: 'total', seconds: Number(seconds.toFixed(3)), maxRssKiB: process.resourceUsage().maxRSS }));
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
