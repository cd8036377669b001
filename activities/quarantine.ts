import type { DuckDBConnection } from '@duckdb/node-api';
import type { IngestSpec } from '../workflows/types';
import { quoteIdent, quoteLiteral } from './ingestion-sql';
import { DUCKDB } from './sql-dialect';

/** One row-level rule: rows matching `condition` are invalid for `reason` (a SQL text expression). */
interface RowRule {
  condition: string;
  reason: string;
}

export function rowRules(spec: IngestSpec): RowRule[] {
  const rules: RowRule[] = [];
  const target = quoteIdent(spec.target.name);
  const known = Object.keys(spec.target.values).map(quoteLiteral).join(', ');
  rules.push({
    condition: `${target} IS NULL OR trim(${target}) NOT IN (${known})`,
    reason: `${quoteLiteral(`${spec.target.name}: unknown value `)} || coalesce(${target}, '<empty>')`,
  });
  for (const feature of spec.numericFeatures) {
    const column = quoteIdent(feature.name);
    const value = DUCKDB.numericValue(`trim(${column})`, feature.dtype);
    rules.push({
      condition: `${value} IS NULL`,
      reason: `${quoteLiteral(`${feature.name}: not ${feature.dtype}: `)} || coalesce(${column}, '<empty>')`,
    });
    const bounds = [
      ...(feature.min === undefined ? [] : [`${value} < ${feature.min}`]),
      ...(feature.max === undefined ? [] : [`${value} > ${feature.max}`]),
    ];
    if (bounds.length > 0) {
      rules.push({
        condition: bounds.join(' OR '),
        reason: `${quoteLiteral(`${feature.name}: out of range: `)} || ${column}`,
      });
    }
  }
  for (const name of [spec.idColumn, ...spec.categoricalFeatures]) {
    rules.push({
      condition: `${quoteIdent(name)} IS NULL OR trim(${quoteIdent(name)}) = ''`,
      reason: quoteLiteral(`${name}: empty`),
    });
  }
  return rules;
}

/**
 * Returns true when any row breaks a row rule or repeats a booking id. One scan of `raw`, so the
 * common case of a clean file skips the per-rule queries that build error messages.
 */
export async function hasInvalidRows(connection: DuckDBConnection, spec: IngestSpec): Promise<boolean> {
  const id = quoteIdent(spec.idColumn);
  const invalid = rowRules(spec)
    .map((rule) => `(${rule.condition})`)
    .join(' OR ');
  const reader = await connection.runAndReadAll(
    `SELECT count(*) FILTER (WHERE ${invalid})::BIGINT AS invalid, (count(*) - count(DISTINCT trim(${id})))::BIGINT AS repeated
     FROM raw`,
  );
  const [row] = reader.getRowObjectsJS();
  return Number(row.invalid) > 0 || Number(row.repeated) > 0;
}

/**
 * Moves every invalid row of `raw` into the temp table `quarantined` with its source line and reasons,
 * and leaves only valid rows in `raw`. A repeated booking id keeps its first row. Returns the number
 * of rows moved.
 */
export async function quarantineInvalidRows(connection: DuckDBConnection, spec: IngestSpec): Promise<number> {
  const id = quoteIdent(spec.idColumn);
  const selects = rowRules(spec).map((rule) => `SELECT rowid AS _row, ${rule.reason} AS reason FROM raw WHERE ${rule.condition}`);
  selects.push(
    `SELECT _row, ${quoteLiteral(`${spec.idColumn}: duplicate of an earlier row`)} AS reason FROM (
       SELECT rowid AS _row, row_number() OVER (PARTITION BY trim(${id}) ORDER BY rowid) AS occurrence FROM raw
     ) WHERE occurrence > 1`,
  );
  await connection.run(
    `CREATE OR REPLACE TEMP TABLE rejected AS
     SELECT _row, string_agg(reason, '; ' ORDER BY reason) AS reasons FROM (${selects.join(' UNION ALL ')}) GROUP BY _row`,
  );
  await connection.run(
    `CREATE OR REPLACE TEMP TABLE quarantined AS
     SELECT raw.*, CAST(r._row + 2 AS INTEGER) AS _line, r.reasons AS _reasons
     FROM raw JOIN rejected r ON raw.rowid = r._row ORDER BY r._row`,
  );
  await connection.run('CREATE OR REPLACE TEMP TABLE valid AS SELECT * FROM raw ANTI JOIN rejected r ON raw.rowid = r._row ORDER BY raw.rowid');
  await connection.run('DROP TABLE raw');
  await connection.run('ALTER TABLE valid RENAME TO raw');
  const reader = await connection.runAndReadAll('SELECT count(*)::INTEGER AS n FROM quarantined');
  return Number(reader.getRowObjectsJS()[0].n);
}
