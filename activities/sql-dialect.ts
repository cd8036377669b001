import type { NumericFeature } from '../workflows/types';

/**
 * The parts of SQL that differ between engines. The ingest steps build their queries only through a
 * dialect, so another engine (Spark SQL on a Databricks warehouse) needs a new dialect, not new steps.
 */
export interface SqlDialect {
  readonly name: string;
  quoteIdent(name: string): string;
  quoteLiteral(value: string): string;
  /** Type name of a numeric feature dtype. */
  numericType(dtype: NumericFeature['dtype']): string;
  integerType(): string;
  /** Cast that yields NULL instead of failing when the value does not convert. */
  tryCast(expression: string, type: string): string;
  /**
   * The value of a text or number as `dtype`, or NULL when it is not one. A fraction is not an integer
   * (2.5 is not rounded to 3), and NaN or infinity is not a float.
   */
  numericValue(expression: string, dtype: NumericFeature['dtype']): string;
  makeDate(year: string, month: string, day: string): string;
  /** Number of days in the month of a (valid) year and month. */
  daysInMonth(year: string, month: string): string;
  /** Date `days` days before `date`. */
  subtractDays(date: string, days: string): string;
  /** The first 32 bits of md5(expression) as a non-negative integer. */
  md5Prefix32(expression: string): string;
  timestampLiteral(isoTimestamp: string): string;
  /** Line of the source file that a row of the raw table came from (the header is line 1). */
  sourceLine(): string;
  /** Smallest and largest of two values. */
  least(a: string, b: string): string;
  greatest(a: string, b: string): string;
}

const DUCKDB_TYPES: Record<NumericFeature['dtype'], string> = {
  int8: 'TINYINT',
  int16: 'SMALLINT',
  int32: 'INTEGER',
  int64: 'BIGINT',
  float32: 'FLOAT',
  float64: 'DOUBLE',
};

export const DUCKDB: SqlDialect = {
  name: 'duckdb',
  quoteIdent: (name) => `"${name.replace(/"/g, '""')}"`,
  quoteLiteral: (value) => `'${value.replace(/'/g, "''")}'`,
  numericType: (dtype) => DUCKDB_TYPES[dtype],
  integerType: () => 'INTEGER',
  tryCast: (expression, type) => `TRY_CAST(${expression} AS ${type})`,
  numericValue: (expression, dtype) => {
    const number = `TRY_CAST(${expression} AS DOUBLE)`;
    const valid = dtype.startsWith('float') ? `isfinite(${number})` : `${number} = trunc(${number})`;
    return `CASE WHEN ${valid} THEN TRY_CAST(${expression} AS ${DUCKDB_TYPES[dtype]}) END`;
  },
  makeDate: (year, month, day) => `make_date(${year}, ${month}, ${day})`,
  daysInMonth: (year, month) => `day(last_day(make_date(${year}, ${month}, 1)))`,
  subtractDays: (date, days) => `CAST(${date} - ${days} AS DATE)`,
  md5Prefix32: (expression) => `('0x' || substr(md5(${expression}), 1, 8))::UBIGINT`,
  timestampLiteral: (iso) => `TIMESTAMP '${iso.replace(/'/g, "''")}'`,
  // A table created from read_csv keeps the file's row order, so rowid 0 is line 2.
  sourceLine: () => '(rowid + 2)',
  least: (a, b) => `least(${a}, ${b})`,
  greatest: (a, b) => `greatest(${a}, ${b})`,
};
