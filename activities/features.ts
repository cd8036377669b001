import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { log } from '@temporalio/activity';
import { invalidInput } from '../common/errors';
import { LocalCatalog } from '../platform/catalog/local';
import { qualifiedName, type TableName } from '../platform/catalog/port';
import type { TableRef } from '../workflows/types';
import { openDuckDB } from './ingestion';
import { quoteIdent, quoteLiteral } from './ingestion-sql';
import { stageMerge, type ChangeCounts } from './merge';

export interface FeatureTableInput {
  table: TableName;
  /** Primary key of the feature table. */
  key: string;
  features: string[];
  /** Table versions whose rows provide the features, such as train_set and test_set. */
  sources: TableRef[];
}

export interface FeatureTableResult {
  table: TableRef;
  changes: ChangeCounts;
  /** True when the newest version already came from the same source versions. */
  reused: boolean;
}

/**
 * Upserts the features of every booking in the source tables into the feature table by key, as a new
 * version with a change feed. The original project appended the newest rows blindly, so repeated ids
 * piled up. Here the key is checked to be unique, and unchanged rows keep their stored version.
 */
export async function updateFeatureTable(catalogRoot: string, input: FeatureTableInput): Promise<FeatureTableResult> {
  const catalog = new LocalCatalog(catalogRoot);
  const sourceHash = crypto
    .createHash('sha256')
    .update(JSON.stringify({ sources: input.sources, key: input.key, features: input.features }))
    .digest('hex');
  const previous = catalog.latest(input.table);
  if (previous?.sourceHash === sourceHash) {
    log.info('Feature table already built from these table versions', { table: qualifiedName(input.table), version: previous.version });
    return { table: { ...input.table, version: previous.version }, changes: previous.changes ?? { inserted: 0, updated: 0, deleted: 0 }, reused: true };
  }

  const key = quoteIdent(input.key);
  const columns = [key, ...input.features.map(quoteIdent)].join(', ');
  const batch = input.sources
    .map((source) => `SELECT ${columns} FROM read_parquet(${quoteLiteral(catalog.snapshotPath(source))})`)
    .join(' UNION ALL ');
  const spill = path.join(catalogRoot, '_staging', `features-${crypto.randomUUID()}`);
  fs.mkdirSync(spill, { recursive: true });
  const { instance, connection } = await openDuckDB(spill);
  try {
    const reader = await connection.runAndReadAll(
      `SELECT ${key} AS id, count(*)::INTEGER AS n FROM (${batch}) GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT 5`,
    );
    const repeated = reader.getRowObjectsJS();
    if (repeated.length > 0) {
      throw invalidInput(
        `Feature table ${qualifiedName(input.table)}: primary key ${input.key} repeats across ` +
          `${input.sources.map(qualifiedName).join(', ')} (${repeated.map((r) => `${r.id} ${r.n} times`).join(', ')}). ` +
          'Each booking must be in one source table.',
      );
    }
    const merge = await stageMerge(connection, catalog, input.table, previous, { sql: batch }, input.key, `SELECT ${key} FROM (${batch})`);
    const { inserted, updated, deleted } = merge.counts;
    if (previous && inserted + updated + deleted === 0) {
      fs.rmSync(merge.snapshot, { force: true });
      if (merge.changes) fs.rmSync(merge.changes, { force: true });
      return { table: { ...input.table, version: previous.version }, changes: merge.counts, reused: false };
    }
    const table = await catalog.commit(
      input.table,
      merge.snapshot,
      { rowCount: merge.rowCount, sourceHash, changes: merge.counts },
      { expectedVersion: previous?.version ?? 0, stagedChanges: merge.changes, operation: previous ? 'MERGE' : 'WRITE' },
    );
    log.info('Feature table updated', { table: qualifiedName(table), version: table.version, ...merge.counts });
    return { table, changes: merge.counts, reused: false };
  } finally {
    connection.closeSync();
    instance.closeSync();
    fs.rmSync(spill, { recursive: true, force: true });
  }
}
