import fs from 'node:fs';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import type { IngestSpec } from '../workflows/types';
import type { CsvHeader } from './csv-header';
import {
  cleanSelectSql,
  duplicateRowsSql,
  quoteIdent,
  quoteLiteral,
  readTypedCsvSql,
  realDateSql,
  renamed,
  requiredColumns,
  type SplitTable,
  SPLIT_TABLES,
  splitTableSql,
} from './ingestion-sql';
import { DUCKDB } from './sql-dialect';

/** Files and figures of a one-pass read whose checks all passed. */
export interface OnePassBatches {
  /** One Parquet file of cleaned rows per target table. */
  files: Record<SplitTable, string>;
  rows: Record<SplitTable, number>;
  rowsIn: number;
  arrivalDatesNormalised: number;
  canceledShareTrain: number;
  duplicateRowsIgnoringId: number;
}

export type OnePassResult = { accepted: true; batches: OnePassBatches } | { accepted: false; reason: string };

async function firstRow(connection: DuckDBConnection, sql: string): Promise<Record<string, unknown>> {
  return (await connection.runAndReadAll(sql)).getRowObjectsJS()[0] as Record<string, unknown>;
}

/** Rows the careful path would reject or change: nulls, out-of-range numbers, unknown labels, untrimmed text. */
function suspectRowSql(spec: IngestSpec): string {
  const conditions: string[] = [];
  for (const raw of [spec.idColumn, ...spec.categoricalFeatures]) {
    const column = quoteIdent(renamed(spec, raw));
    conditions.push(`${column} IS NULL OR ${column} = '' OR ${column} <> trim(${column})`);
  }
  conditions.push(`${quoteIdent(renamed(spec, spec.target.name))} IS NULL`);
  for (const feature of spec.numericFeatures) {
    const column = quoteIdent(renamed(spec, feature.name));
    conditions.push(`${column} IS NULL`);
    if (feature.min !== undefined) conditions.push(`${column} < ${feature.min}`);
    if (feature.max !== undefined) conditions.push(`${column} > ${feature.max}`);
  }
  return conditions.map((c) => `(${c})`).join(' OR ');
}

/**
 * Reads the file once with the numeric columns typed, cleans it, and writes one Parquet file per
 * target table into `stagingDir`. Then it checks those files in one scan. The result is declined when
 * the file differs in any way from a clean one: a line DuckDB rejected, a missing column, a null, a
 * value out of range, an unknown label, a repeated id, a value with surrounding spaces, or an empty
 * table. The caller then runs the careful path, which names every problem or quarantines the rows, so
 * both paths accept the same files and write the same rows.
 *
 * A clean file, the common case, is read once and streamed to Parquet instead of being loaded as text,
 * checked rule by rule and copied; memory stays near DuckDB's streaming buffers.
 */
export async function ingestInOnePass(
  connection: DuckDBConnection,
  file: string,
  header: CsvHeader,
  spec: IngestSpec,
  ingestedAt: string,
  stagingDir: string,
): Promise<OnePassResult> {
  const present = new Set(header.columns);
  if (!requiredColumns(spec).every((c) => present.has(c))) return { accepted: false, reason: 'required columns are missing' };

  const source = readTypedCsvSql(file, header.columns, header.delimiter, spec);
  const cleaned = cleanSelectSql(spec, ingestedAt, DUCKDB, { from: source, trim: false });
  await connection.run(
    `COPY (SELECT * EXCLUDE (_date_normalised, _is_test), ${splitTableSql(spec)} AS _table FROM (${cleaned}))
     TO ${quoteLiteral(stagingDir)} (FORMAT parquet, PARTITION_BY (_table))`,
  );

  const rejected = await firstRow(
    connection,
    `SELECT count(*)::BIGINT AS n, min(line)::BIGINT AS line, first(error_message ORDER BY line) AS message FROM reject_errors`,
  );
  if (Number(rejected.n) > 0) {
    return { accepted: false, reason: `${rejected.n} lines did not parse, the first on line ${rejected.line}: ${rejected.message}` };
  }

  const files = {} as Record<SplitTable, string>;
  for (const table of SPLIT_TABLES) {
    const dir = path.join(stagingDir, `_table=${table}`);
    const written = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
    if (written.length !== 1) return { accepted: false, reason: `${table} got ${written.length} files instead of one` };
    files[table] = path.join(dir, written[0]);
  }

  const all = `read_parquet(${quoteLiteral(path.join(stagingDir, '*', '*.parquet'))}, hive_partitioning = true)`;
  const id = quoteIdent(renamed(spec, spec.idColumn));
  const target = quoteIdent(renamed(spec, spec.target.name));
  const stats = await firstRow(
    connection,
    `SELECT count(*)::BIGINT AS rows_in,
            -- Distinct hashes prove distinct ids; a hash collision only sends the file to the careful path.
            count(DISTINCT hash(${id}))::BIGINT AS ids,
            count(*) FILTER (WHERE ${suspectRowSql(spec)})::BIGINT AS suspect,
            ${SPLIT_TABLES.map((t) => `count(*) FILTER (WHERE _table = '${t}')::BIGINT AS ${t}`).join(', ')},
            count(*) FILTER (WHERE NOT ${realDateSql('arrival_year', 'arrival_month', 'arrival_date')})::BIGINT AS normalised,
            avg(${target}) FILTER (WHERE _table = 'train') AS canceled_share,
            (${duplicateRowsSql(spec, all)}) AS duplicates
     FROM ${all}`,
  );
  if (Number(stats.suspect) > 0) return { accepted: false, reason: `${stats.suspect} rows need the careful checks` };
  if (Number(stats.ids) !== Number(stats.rows_in)) return { accepted: false, reason: 'booking ids repeat' };

  return {
    accepted: true,
    batches: {
      files,
      rows: { train: Number(stats.train), test: Number(stats.test), extra: Number(stats.extra) },
      rowsIn: Number(stats.rows_in),
      arrivalDatesNormalised: Number(stats.normalised),
      canceledShareTrain: Number(stats.canceled_share),
      duplicateRowsIgnoringId: Number(stats.duplicates),
    },
  };
}
