import fs from 'node:fs';
import type { DuckDBConnection } from '@duckdb/node-api';
import type { LocalCatalog } from '../platform/catalog/local';
import type { TableName, TableVersionInfo } from '../platform/catalog/port';
import { quoteIdent, quoteLiteral } from './ingestion-sql';

export interface ChangeCounts {
  inserted: number;
  updated: number;
  deleted: number;
}

export interface StagedMerge {
  snapshot: string;
  /** Staged change feed, absent for a first version because its feed is every row of its snapshot. */
  changes?: string;
  counts: ChangeCounts;
  rowCount: number;
}

/** The rows of one table in one ingested file: a query, and the Parquet file containing them if there is one. */
export interface Batch {
  sql: string;
  file?: string;
}

/** Columns that do not make a row different: its key and the time it was last written. */
const IGNORED_IN_COMPARISON = new Set(['update_timestamp_utc']);

async function count(connection: DuckDBConnection, sql: string): Promise<number> {
  const reader = await connection.runAndReadAll(`SELECT count(*)::BIGINT AS n FROM (${sql})`);
  return Number(reader.getRowObjectsJS()[0].n);
}

/**
 * Stages the next version of `table` as a merge (upsert by `key`) of `batch` into the
 * newest version, plus its change feed. Rows of the batch that equal their stored row keep the stored
 * row, so they are not reported as changed. A stored row whose key appears in `allBatchKeys` but not in
 * this table's batch moved to another table (its segment changed) and is deleted here.
 *
 * Reads and writes only Parquet files; the caller commits the staged files.
 */
export async function stageMerge(
  connection: DuckDBConnection,
  catalog: LocalCatalog,
  table: TableName,
  previous: TableVersionInfo | undefined,
  batch: Batch,
  key: string,
  allBatchKeys: string,
): Promise<StagedMerge> {
  const k = quoteIdent(key);
  const snapshot = catalog.stagingPath(table, 'snapshot');
  if (!previous) {
    // A first version is the batch itself. Like Delta Lake, whose change feed reads inserts from the
    // data files, it gets no separate change-feed file (see LocalCatalog.changeFeedSql).
    if (batch.file) fs.renameSync(batch.file, snapshot);
    else await connection.run(`COPY (${batch.sql} ORDER BY ${k}) TO ${quoteLiteral(snapshot)} (FORMAT parquet)`);
    const inserted = await count(connection, `SELECT 1 FROM read_parquet(${quoteLiteral(snapshot)})`);
    return { snapshot, counts: { inserted, updated: 0, deleted: 0 }, rowCount: inserted };
  }

  const changes = catalog.stagingPath(table, 'changes');
  await connection.run(`CREATE OR REPLACE TEMP TABLE batch AS ${batch.sql}`);

  const previousFile = catalog.snapshotPath({ ...table, version: previous.version });
  await connection.run(`CREATE OR REPLACE TEMP TABLE previous AS SELECT * FROM read_parquet(${quoteLiteral(previousFile)})`);
  const columnsOf = async (name: string): Promise<string[]> =>
    (await connection.runAndReadAll(`DESCRIBE ${name}`)).getRowObjectsJS().map((r) => String(r.column_name));
  const batchColumns = await columnsOf('batch');
  const storedColumns = new Set(await columnsOf('previous'));
  const compared = batchColumns.filter((c) => c !== key && !IGNORED_IN_COMPARISON.has(c));
  // A batch column the stored version lacks means the schema changed: every matched row is an update.
  const differs = compared.every((c) => storedColumns.has(c))
    ? `ROW(${compared.map((c) => `b.${quoteIdent(c)}`).join(', ')}) IS DISTINCT FROM ROW(${compared
        .map((c) => `p.${quoteIdent(c)}`)
        .join(', ')})`
    : 'true';

  await connection.run(`CREATE OR REPLACE TEMP TABLE inserted AS SELECT b.* FROM batch b ANTI JOIN previous p ON b.${k} = p.${k}`);
  await connection.run(
    `CREATE OR REPLACE TEMP TABLE updated AS SELECT b.* FROM batch b JOIN previous p ON b.${k} = p.${k} WHERE ${differs}`,
  );
  await connection.run(
    `CREATE OR REPLACE TEMP TABLE deleted AS
     SELECT p.* FROM previous p SEMI JOIN (${allBatchKeys}) a ON p.${k} = a.${k} ANTI JOIN batch b ON p.${k} = b.${k}`,
  );
  await connection.run(
    `COPY (
       SELECT p.* FROM previous p ANTI JOIN (SELECT ${k} FROM updated UNION ALL SELECT ${k} FROM deleted) c ON p.${k} = c.${k}
       UNION ALL BY NAME SELECT * FROM inserted
       UNION ALL BY NAME SELECT * FROM updated
       ORDER BY ${k}
     ) TO ${quoteLiteral(snapshot)} (FORMAT parquet)`,
  );
  await connection.run(
    `COPY (
       SELECT 'insert' AS _change_type, * FROM inserted
       UNION ALL BY NAME SELECT 'update_postimage' AS _change_type, * FROM updated
       UNION ALL BY NAME SELECT 'delete' AS _change_type, * FROM deleted
       ORDER BY ${k}
     ) TO ${quoteLiteral(changes)} (FORMAT parquet)`,
  );
  const counts = {
    inserted: await count(connection, 'SELECT 1 FROM inserted'),
    updated: await count(connection, 'SELECT 1 FROM updated'),
    deleted: await count(connection, 'SELECT 1 FROM deleted'),
  };
  const rowCount = await count(connection, `SELECT 1 FROM read_parquet(${quoteLiteral(snapshot)})`);
  return { snapshot, changes, counts, rowCount };
}
