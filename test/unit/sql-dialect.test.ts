import { cleanSelectSql, isTestSql } from '../../activities/ingestion-sql';
import { DUCKDB, type SqlDialect } from '../../activities/sql-dialect';
import { testSpec } from '../helpers/fixtures';

// The ingest steps must build their SQL only through the dialect, so another engine can plug in.
// A dialect that tags every construct shows which parts of the SQL came from it.
const TAGGED: SqlDialect = {
  ...DUCKDB,
  name: 'tagged',
  numericType: (dtype) => `T_${dtype}`,
  numericValue: (expression, dtype) => `NUM_T(${expression}, ${dtype})`,
  integerType: () => 'T_INT',
  makeDate: (y, m, d) => `MAKE_DATE_T(${y}, ${m}, ${d})`,
  daysInMonth: (y, m) => `DAYS_T(${y}, ${m})`,
  subtractDays: (date, days) => `SUB_DAYS_T(${date}, ${days})`,
  md5Prefix32: (expression) => `MD5_T(${expression})`,
  timestampLiteral: (iso) => `TS_T('${iso}')`,
};

describe('SQL dialect', () => {
  const sql = cleanSelectSql(testSpec('/tmp/x.csv').ingest, '2026-01-01T00:00:00Z', TAGGED);

  it('builds dates through the dialect', () => {
    expect(sql).toContain('MAKE_DATE_T(');
    expect(sql).toContain('DAYS_T(');
    expect(sql).toContain('SUB_DAYS_T(date_of_arrival');
    expect(sql).not.toMatch(/\bmake_date\(|last_day\(/);
  });

  it('builds types, split and timestamp through the dialect', () => {
    expect(sql).toContain('NUM_T(trim("lead_time"), int16)');
    expect(sql).toContain('NUM_T(trim("avg_price_per_room"), float64)');
    expect(sql).toContain('MD5_T("booking_id")');
    expect(sql).toContain("TS_T('2026-01-01T00:00:00Z')");
    expect(sql).not.toMatch(/SMALLINT|DOUBLE|UBIGINT|TIMESTAMP '/);
  });

  it('keeps the split threshold in the dialect-free part', () => {
    expect(isTestSql('id', 0.25, TAGGED)).toBe('((MD5_T(id) % 1000000) < 250000)');
  });
});
