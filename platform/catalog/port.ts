/** A table in the catalog, without a version: `catalog.schema.name`. */
export interface TableName {
  catalog: string;
  schema: string;
  name: string;
}

/** One immutable version of a table. Activities pass this reference, never the rows. */
export interface TableRef extends TableName {
  version: number;
}

/** One entry of a table's history, like a row of Delta Lake's `DESCRIBE HISTORY`. */
export interface TableVersionInfo {
  version: number;
  /** ISO-8601 UTC time of the commit. */
  timestamp: string;
  /** WRITE replaces the table's content, MERGE upserts rows by key, APPEND adds rows. */
  operation: 'WRITE' | 'MERGE' | 'APPEND';
  rowCount: number;
  /** Hash of the source file and the ingest settings that produced this version. */
  sourceHash: string;
  /** Row counts of the version's change feed; absent on versions written before the feed existed. */
  changes?: { inserted: number; updated: number; deleted: number };
  /** Data-quality figures of the ingestion that wrote the version. */
  report?: Record<string, unknown>;
}

export const qualifiedName = (t: TableName): string => `${t.catalog}.${t.schema}.${t.name}`;
