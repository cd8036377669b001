import type { IngestSpec } from '../workflows/types';

// SQL for the ingest steps, in DuckDB's dialect. Every raw column is read as text first, so a value
// that does not convert is reported by the checks instead of failing the whole read.

export const quoteIdent = (name: string): string => `"${name.replace(/"/g, '""')}"`;
export const quoteLiteral = (value: string): string => `'${value.replace(/'/g, "''")}'`;

const SQL_TYPE = {
  int8: 'TINYINT',
  int16: 'SMALLINT',
  int32: 'INTEGER',
  int64: 'BIGINT',
  float32: 'FLOAT',
  float64: 'DOUBLE',
} as const;

export function sqlType(dtype: keyof typeof SQL_TYPE): string {
  return SQL_TYPE[dtype];
}

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
 * because a damaged last line can make DuckDB's sniffer misread the whole file; with it off, a row with
 * the wrong number of fields fails with its line number.
 */
export function readRawSql(file: string, columns: string[], delimiter: string): string {
  const types = columns.map((name) => `${quoteLiteral(name)}: 'VARCHAR'`).join(', ');
  return `CREATE TEMP TABLE raw AS SELECT * FROM read_csv(${quoteLiteral(file)},
    auto_detect = false, header = true, delim = ${quoteLiteral(delimiter)}, quote = '"', escape = '"',
    columns = {${types}})`;
}

/**
 * Arrival date from year, month and day, where an impossible date rolls forward to the next real one:
 * day 0 becomes the 1st, a day past the month's end becomes the 1st of the next month, and a month
 * past 12 becomes 1 January of the next year (2018-02-29 -> 2018-03-01, 2023-12-32 -> 2024-01-01).
 */
export function arrivalDateSql(year: string, month: string, day: string): string {
  const y = `CAST(${year} AS INTEGER)`;
  const m = `CAST(${month} AS INTEGER)`;
  const d = `CAST(${day} AS INTEGER)`;
  return `CASE
    WHEN ${m} > 12 THEN make_date(${y} + 1, 1, 1)
    WHEN ${m} < 1 THEN make_date(${y}, 1, 1)
    WHEN ${d} < 1 THEN make_date(${y}, ${m}, 1)
    WHEN ${d} > day(last_day(make_date(${y}, ${m}, 1))) THEN
      CASE WHEN ${m} = 12 THEN make_date(${y} + 1, 1, 1) ELSE make_date(${y}, ${m} + 1, 1) END
    ELSE make_date(${y}, ${m}, ${d})
  END`;
}

/** True when year, month and day already form a real date. */
export function realDateSql(year: string, month: string, day: string): string {
  const m = `CAST(${month} AS INTEGER)`;
  const d = `CAST(${day} AS INTEGER)`;
  // AND does not short-circuit in DuckDB, so the month is clamped before make_date sees it.
  const safeMonth = `least(greatest(${m}, 1), 12)`;
  return `(${m} BETWEEN 1 AND 12 AND ${d} >= 1
    AND ${d} <= day(last_day(make_date(CAST(${year} AS INTEGER), ${safeMonth}, 1))))`;
}

/**
 * Deterministic split: the first 32 bits of md5(booking_id), modulo one million, below the test share.
 * md5 is defined the same way in DuckDB and Spark SQL, so a booking lands on the same side everywhere.
 */
export function isTestSql(idColumn: string, testFraction: number): string {
  const threshold = Math.round(testFraction * 1_000_000);
  return `((('0x' || substr(md5(${idColumn}), 1, 8))::UBIGINT % 1000000) < ${threshold})`;
}

/** Returns a categorical column's trimmed value with the configured corrections applied. */
export function correctedSql(spec: IngestSpec, column: string): string {
  const value = `trim(${quoteIdent(column)})`;
  const corrections = Object.entries(spec.valueCorrections[column] ?? {});
  if (corrections.length === 0) return value;
  const cases = corrections.map(([from, to]) => `WHEN ${quoteLiteral(from)} THEN ${quoteLiteral(to)}`).join(' ');
  return `CASE ${value} ${cases} ELSE ${value} END`;
}

/** Builds the cleaned table from `raw`; assumes the checks on `raw` have passed. */
export function cleanSql(spec: IngestSpec, ingestedAt: string): string {
  const id = renamed(spec, spec.idColumn);
  // Surrounding spaces are not part of an id or a category ("Online " is "Online").
  const columns: string[] = [`trim(${quoteIdent(spec.idColumn)}) AS ${quoteIdent(id)}`];
  for (const feature of spec.numericFeatures) {
    columns.push(
      `CAST(trim(${quoteIdent(feature.name)}) AS ${sqlType(feature.dtype)}) AS ${quoteIdent(renamed(spec, feature.name))}`,
    );
  }
  for (const name of spec.categoricalFeatures) {
    columns.push(`${correctedSql(spec, name)} AS ${quoteIdent(renamed(spec, name))}`);
  }
  const cases = Object.entries(spec.target.values)
    .map(([from, to]) => `WHEN ${quoteLiteral(from)} THEN ${to}`)
    .join(' ');
  columns.push(
    `CAST(CASE trim(${quoteIdent(spec.target.name)}) ${cases} END AS INTEGER) AS ${quoteIdent(renamed(spec, spec.target.name))}`,
  );
  const arrival = arrivalDateSql('arrival_year', 'arrival_month', 'arrival_date');
  return `CREATE TEMP TABLE clean AS
    SELECT *,
      CAST(date_of_arrival - CAST(lead_time AS INTEGER) AS DATE) AS date_of_booking,
      TIMESTAMP ${quoteLiteral(ingestedAt)} AS update_timestamp_utc
    FROM (
      SELECT ${columns.join(',\n        ')},
        ${arrival} AS date_of_arrival,
        NOT ${realDateSql('arrival_year', 'arrival_month', 'arrival_date')} AS _date_normalised,
        ${isTestSql(quoteIdent(id), spec.testFraction)} AS _is_test
      FROM raw
    )`;
}
