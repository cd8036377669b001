import type { IngestSpec } from '../workflows/types';
import { DUCKDB, type SqlDialect } from './sql-dialect';

// SQL of the ingest steps, built through a dialect. The careful path reads every raw column as text, so a
// value that does not convert is reported by the checks instead of failing the whole read. The one-pass
// path reads the numeric columns typed and relies on a check of its output instead.

export const quoteIdent = DUCKDB.quoteIdent;
export const quoteLiteral = DUCKDB.quoteLiteral;

/** Returns the name a raw column gets after the configured renames. */
export function renamed(spec: IngestSpec, raw: string): string {
  return spec.renames[raw] ?? raw;
}

/** Raw CSV columns the file must contain. */
export function requiredColumns(spec: IngestSpec): string[] {
  return [
    spec.idColumn,
    ...spec.numericFeatures.map((f) => f.name),
    ...spec.categoricalFeatures,
    spec.target.name,
  ];
}

/**
 * Reads every column as text with the header and delimiter found beforehand. Dialect sniffing is off,
 * because a damaged last line can make DuckDB's sniffer misread the whole file. With sniffing off, a
 * row with the wrong number of fields fails with its line number.
 */
export function readRawSql(file: string, columns: string[], delimiter: string): string {
  return `CREATE TEMP TABLE raw AS SELECT * FROM ${readCsvSql(file, columns, delimiter)}`;
}

/**
 * Returns a `read_csv` call that reads the configured numeric columns as numbers and every other column
 * as text. Lines that do not parse or convert are skipped and listed in DuckDB's `reject_errors` table.
 */
export function readTypedCsvSql(file: string, columns: string[], delimiter: string, spec: IngestSpec): string {
  // DOUBLE keeps fractions visible, so cleanSelectSql can reject 2.5 for an integer column.
  const types = new Map(spec.numericFeatures.map((f) => [f.name, 'DOUBLE']));
  return readCsvSql(file, columns, delimiter, types, 'store_rejects = true');
}

function readCsvSql(file: string, columns: string[], delimiter: string, types = new Map<string, string>(), extra = ''): string {
  const typed = columns.map((name) => `${quoteLiteral(name)}: '${types.get(name) ?? 'VARCHAR'}'`).join(', ');
  return `read_csv(${quoteLiteral(file)},
    auto_detect = false, header = true, delim = ${quoteLiteral(delimiter)}, quote = '"', escape = '"',
    columns = {${typed}}${extra ? `, ${extra}` : ''})`;
}

/**
 * Arrival date from year, month and day, where an impossible date rolls forward to the next real one:
 * day 0 becomes the 1st, a day past the month's end becomes the 1st of the next month, and a month
 * past 12 becomes 1 January of the next year (2018-02-29 -> 2018-03-01, 2023-12-32 -> 2024-01-01).
 */
export function arrivalDateSql(year: string, month: string, day: string, dialect: SqlDialect = DUCKDB): string {
  const int = dialect.integerType();
  const y = `CAST(${year} AS ${int})`;
  const m = `CAST(${month} AS ${int})`;
  const d = `CAST(${day} AS ${int})`;
  // Engines may evaluate every CASE branch, so make_date only ever gets a month from 1 to 12.
  const safeMonth = dialect.least(dialect.greatest(m, '1'), '12');
  return `CASE
    WHEN ${m} > 12 THEN ${dialect.makeDate(`${y} + 1`, '1', '1')}
    WHEN ${m} < 1 THEN ${dialect.makeDate(y, '1', '1')}
    WHEN ${d} < 1 THEN ${dialect.makeDate(y, safeMonth, '1')}
    WHEN ${d} > ${dialect.daysInMonth(y, safeMonth)} THEN
      CASE WHEN ${m} = 12 THEN ${dialect.makeDate(`${y} + 1`, '1', '1')} ELSE ${dialect.makeDate(y, dialect.least(`${safeMonth} + 1`, '12'), '1')} END
    ELSE ${dialect.makeDate(y, safeMonth, dialect.least(d, dialect.daysInMonth(y, safeMonth)))}
  END`;
}

/** True when year, month and day already form a real date. */
export function realDateSql(year: string, month: string, day: string, dialect: SqlDialect = DUCKDB): string {
  const int = dialect.integerType();
  const m = `CAST(${month} AS ${int})`;
  const d = `CAST(${day} AS ${int})`;
  // AND does not short-circuit in DuckDB, so the month is clamped before it reaches make_date.
  const safeMonth = dialect.least(dialect.greatest(m, '1'), '12');
  return `(${m} BETWEEN 1 AND 12 AND ${d} >= 1 AND ${d} <= ${dialect.daysInMonth(`CAST(${year} AS ${int})`, safeMonth)})`;
}

/**
 * Deterministic split: the first 32 bits of md5(booking_id), modulo one million, below the test share.
 * md5 is defined the same way in DuckDB and Spark SQL, so a booking lands on the same side everywhere.
 */
export function isTestSql(idColumn: string, testFraction: number, dialect: SqlDialect = DUCKDB): string {
  const threshold = Math.round(testFraction * 1_000_000);
  return `((${dialect.md5Prefix32(idColumn)} % 1000000) < ${threshold})`;
}

/** Returns a categorical column's value, trimmed unless `trim` is false, with the configured corrections applied. */
export function correctedSql(spec: IngestSpec, column: string, dialect: SqlDialect = DUCKDB, trim = true): string {
  const value = trim ? `trim(${dialect.quoteIdent(column)})` : dialect.quoteIdent(column);
  const corrections = Object.entries(spec.valueCorrections[column] ?? {});
  if (corrections.length === 0) return value;
  const cases = corrections
    .map(([from, to]) => `WHEN ${dialect.quoteLiteral(from)} THEN ${dialect.quoteLiteral(to)}`)
    .join(' ');
  return `CASE ${value} ${cases} ELSE ${value} END`;
}

export interface CleanSource {
  /** Relation the raw columns come from: the `raw` table, or a typed read of the file. */
  from: string;
  /**
   * Whether text values are trimmed. The one-pass path keeps them as they are and falls back to the
   * careful path when any value has surrounding spaces, so both paths give the same rows.
   */
  trim: boolean;
}

const RAW_TABLE: CleanSource = { from: 'raw', trim: true };

/**
 * Builds the SELECT of the cleaned rows, with two helper columns: `_date_normalised` and `_is_test`.
 * Assumes the checks on the source have passed.
 */
export function cleanSelectSql(
  spec: IngestSpec,
  ingestedAt: string,
  dialect: SqlDialect = DUCKDB,
  source: CleanSource = RAW_TABLE,
): string {
  const q = dialect.quoteIdent;
  const text = (column: string): string => (source.trim ? `trim(${q(column)})` : q(column));
  const id = renamed(spec, spec.idColumn);
  // Surrounding spaces are not part of an id or a category ("Online " is "Online").
  const columns: string[] = [`${text(spec.idColumn)} AS ${q(id)}`];
  for (const feature of spec.numericFeatures) {
    columns.push(`${dialect.numericValue(text(feature.name), feature.dtype)} AS ${q(renamed(spec, feature.name))}`);
  }
  for (const name of spec.categoricalFeatures) {
    columns.push(`${correctedSql(spec, name, dialect, source.trim)} AS ${q(renamed(spec, name))}`);
  }
  const cases = Object.entries(spec.target.values)
    .map(([from, to]) => `WHEN ${dialect.quoteLiteral(from)} THEN ${to}`)
    .join(' ');
  columns.push(
    `CAST(CASE ${text(spec.target.name)} ${cases} END AS ${dialect.integerType()}) AS ${q(renamed(spec, spec.target.name))}`,
  );
  const arrival = arrivalDateSql('arrival_year', 'arrival_month', 'arrival_date', dialect);
  return `SELECT *,
      ${dialect.subtractDays('date_of_arrival', `CAST(lead_time AS ${dialect.integerType()})`)} AS date_of_booking,
      ${dialect.timestampLiteral(ingestedAt)} AS update_timestamp_utc
    FROM (
      SELECT ${columns.join(',\n        ')},
        ${arrival} AS date_of_arrival,
        NOT ${realDateSql('arrival_year', 'arrival_month', 'arrival_date', dialect)} AS _date_normalised,
        ${isTestSql(q(id), spec.testFraction, dialect)} AS _is_test
      FROM ${source.from}
    ) AS cleaned`;
}

/** The tables one ingested file is split into. */
export const SPLIT_TABLES = ['train', 'test', 'extra'] as const;
export type SplitTable = (typeof SPLIT_TABLES)[number];

/**
 * Returns the SQL of the table a cleaned row goes to: rows of the training segment go to train or
 * test by `_is_test`, every other row to extra.
 */
export function splitTableSql(spec: IngestSpec, dialect: SqlDialect = DUCKDB): string {
  const segment = dialect.quoteIdent(renamed(spec, spec.trainingSegment.column));
  return `CASE WHEN ${segment} = ${dialect.quoteLiteral(spec.trainingSegment.value)}
    THEN CASE WHEN _is_test THEN 'test' ELSE 'train' END ELSE 'extra' END`;
}

/**
 * Number of cleaned rows that repeat an earlier row in every configured column but the id; `from` is
 * a relation of cleaned rows.
 */
export function duplicateRowsSql(spec: IngestSpec, from: string, dialect: SqlDialect = DUCKDB): string {
  const columns = requiredColumns(spec)
    .filter((c) => c !== spec.idColumn)
    .map((c) => dialect.quoteIdent(renamed(spec, c)))
    .join(', ');
  return `SELECT (count(*) - (SELECT count(*) FROM (SELECT DISTINCT ${columns} FROM ${from})))::BIGINT FROM ${from}`;
}
