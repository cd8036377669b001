import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { DuckDBAppender, DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import type { Logger } from '../common/logger';
import { LocalCatalog } from '../platform/catalog/local';
import { qualifiedName, type TableName, type TableRef } from '../platform/catalog/port';
import type { ServingMetrics } from './metrics';
import type { InferenceTableConfig } from './types';

/**
 * Inference logging to payload tables of the local catalog, like Databricks' AI gateway inference
 * tables. Invocations append rows to an in-memory buffer, and a background flush commits them as one
 * new APPEND version per table, so no file or DuckDB work happens on the request path.
 */

/** One invocation as recorded in the payload table. Optional fields become SQL NULL. */
export interface PayloadRow {
  /** UUID that the client also receives as the `x-request-id` response header. */
  databricksRequestId: string;
  clientRequestId?: string;
  /** Time the request arrived, in ms since the Unix epoch. */
  timestampMs: number;
  statusCode: number;
  executionTimeMs: number;
  /** JSON text of the request body that was sent. */
  request: string;
  /** Response body as sent to the client. A Buffer is decoded as UTF-8 only when flushed. */
  response: string | Buffer;
  endpointName: string;
  /** Absent when the request was rejected before a served entity was chosen. */
  servedEntityName?: string;
  entityName?: string;
  entityVersion?: string;
  /** Time in ms that the request waited for a scaled-to-zero model server to start. */
  coldStartMs?: number;
}

export interface InferenceTableWriterOptions {
  /** Root folder of the local catalog. */
  catalogRoot: string;
  logger: Logger;
  metrics: ServingMetrics;
  /** Time in ms between two background flushes (default 10 000). */
  flushIntervalMs?: number;
  /** Number of buffered rows that starts a flush before the interval ends (default 1 000). */
  flushRows?: number;
  /** Maximum number of unwritten rows kept in memory (default 100 000). More rows drop the oldest. */
  maxBufferedRows?: number;
  /**
   * Maximum request and response text of the unwritten rows, in UTF-16 code units (default 256 Mi).
   * Half of it starts a flush before the interval ends, and more than all of it drops the oldest rows.
   */
  maxBufferedChars?: number;
}

export const DEFAULT_PAYLOAD_FLUSH_INTERVAL_MS = 10_000;
const DEFAULT_FLUSH_ROWS = 1_000;
const DEFAULT_MAX_BUFFERED_ROWS = 100_000;
const DEFAULT_MAX_BUFFERED_CHARS = 256 * 2 ** 20;
/** Rows appended to DuckDB between two yields to the event loop, so a large flush does not stall requests. */
const APPEND_CHUNK_ROWS = 1_000;
/** Maximum delay of a Node timer. A longer one fires after 1 ms. */
const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;
/** Minimum time in ms between two warnings about dropped rows. The next warning reports the rows dropped in between. */
const DROP_WARNING_INTERVAL_MS = 10_000;

const BATCH_TABLE = 'payload_batch';
const BATCH_COLUMNS = `
  databricks_request_id VARCHAR NOT NULL,
  client_request_id VARCHAR,
  timestamp_ms BIGINT NOT NULL,
  status_code INTEGER NOT NULL,
  execution_time_ms BIGINT NOT NULL,
  request VARCHAR NOT NULL,
  response VARCHAR NOT NULL,
  endpoint_name VARCHAR NOT NULL,
  served_entity_name VARCHAR,
  entity_name VARCHAR,
  entity_version VARCHAR,
  cold_start_ms BIGINT`;
/** The payload table's columns in order. `date` is the UTC day of `timestamp_ms`. */
const SELECT_PAYLOAD_COLUMNS = `SELECT databricks_request_id, client_request_id,
  CAST(epoch_ms(timestamp_ms) AS DATE) AS date, timestamp_ms, status_code, execution_time_ms, request, response,
  endpoint_name, served_entity_name, entity_name, entity_version, cold_start_ms
  FROM ${BATCH_TABLE}`;

/** Returns the payload table of an enabled inference table config: `<catalog>.<schema>.<prefix>_payload`. */
export function payloadTable(config: InferenceTableConfig | undefined): TableName | undefined {
  if (!config?.enabled || !config.catalog_name || !config.schema_name || !config.table_name_prefix) return undefined;
  return { catalog: config.catalog_name, schema: config.schema_name, name: `${config.table_name_prefix}_payload` };
}

interface BufferedRow {
  table: TableName;
  row: PayloadRow;
  /** UTF-16 length of the request and response text, the bulk of the row's memory. */
  size: number;
}

/** FIFO queue with O(1) removal from the front, for a buffer of up to maxBufferedRows rows. */
class RowQueue {
  private items: BufferedRow[] = [];
  private head = 0;
  /** Sum of the rows' sizes. */
  size = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: BufferedRow): void {
    this.items.push(item);
    this.size += item.size;
  }

  /** Removes and returns the `count` oldest rows. */
  shift(count: number): BufferedRow[] {
    const removed = this.items.slice(this.head, this.head + count);
    this.head += removed.length;
    for (const item of removed) this.size -= item.size;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return removed;
  }

  takeAll(): BufferedRow[] {
    return this.shift(this.length);
  }

  /** Puts rows back in front of the queue, oldest first. */
  restore(rows: BufferedRow[]): void {
    this.items = rows.concat(this.items.slice(this.head));
    this.head = 0;
    for (const item of rows) this.size += item.size;
  }
}

export class InferenceTableWriter {
  private readonly catalog: LocalCatalog;
  private readonly logger: Logger;
  private readonly flushIntervalMs: number;
  private readonly flushRows: number;
  private readonly maxBufferedRows: number;
  private readonly maxBufferedChars: number;
  private readonly queue = new RowQueue();
  private readonly timer: NodeJS.Timeout;
  /** Rows taken out of the queue by the running flush. They still count against the buffer limit. */
  private flushingRows = 0;
  private flushingChars = 0;
  /** Flushes run one after another on this chain. */
  private flushChain: Promise<void> = Promise.resolve();
  private sizeFlushQueued = false;
  /** After a failed flush, a full buffer waits for the next interval instead of retrying at once. */
  private retryNotBefore = 0;
  private droppedSinceWarning = 0;
  private lastDropWarningAt = 0;
  private duckdb?: Promise<{ instance: DuckDBInstance; connection: DuckDBConnection }>;
  private closed = false;

  constructor(private readonly options: InferenceTableWriterOptions) {
    this.catalog = new LocalCatalog(options.catalogRoot);
    this.logger = options.logger;
    this.flushIntervalMs = options.flushIntervalMs ?? DEFAULT_PAYLOAD_FLUSH_INTERVAL_MS;
    this.flushRows = options.flushRows ?? DEFAULT_FLUSH_ROWS;
    this.maxBufferedRows = options.maxBufferedRows ?? DEFAULT_MAX_BUFFERED_ROWS;
    this.maxBufferedChars = options.maxBufferedChars ?? DEFAULT_MAX_BUFFERED_CHARS;
    if (!(this.flushIntervalMs > 0 && this.flushIntervalMs <= MAX_TIMER_DELAY_MS)) {
      throw new RangeError(
        `Invalid payloadFlushIntervalMs ${this.flushIntervalMs}: expected a number of milliseconds greater than 0 and at most ${MAX_TIMER_DELAY_MS}.`,
      );
    }
    if (!(Number.isInteger(this.maxBufferedRows) && this.maxBufferedRows >= 1)) {
      throw new RangeError(`Invalid payloadMaxBufferedRows ${this.maxBufferedRows}: expected a whole number of at least 1.`);
    }
    if (!(Number.isInteger(this.maxBufferedChars) && this.maxBufferedChars >= 1)) {
      throw new RangeError(`Invalid payloadMaxBufferedChars ${this.maxBufferedChars}: expected a whole number of at least 1.`);
    }
    this.timer = setInterval(() => {
      if (this.queue.length > 0) void this.flush();
    }, this.flushIntervalMs);
    this.timer.unref();
  }

  /** Number of rows not yet written, including those of a flush in progress. */
  get bufferedRows(): number {
    return this.queue.length + this.flushingRows;
  }

  /** Buffers one row. Starts a flush when the buffer reaches `flushRows`. Never blocks or throws. */
  append(table: TableName, row: PayloadRow): void {
    if (this.closed) {
      this.logger.warn({ endpoint: row.endpointName, requestId: row.databricksRequestId }, 'inference table row dropped after close');
      return;
    }
    this.queue.push({ table, row, size: row.request.length + row.response.length });
    if (this.overLimit()) this.dropOldest();
    const full = this.queue.length >= this.flushRows || this.queue.size * 2 >= this.maxBufferedChars;
    if (full && !this.sizeFlushQueued && Date.now() >= this.retryNotBefore) {
      this.sizeFlushQueued = true;
      void this.flush();
    }
  }

  /**
   * Writes every buffered row: one APPEND version per payload table. Resolves when the rows buffered
   * at the call are written or, if writing failed, back in the buffer. Never rejects.
   */
  flush(): Promise<void> {
    this.flushChain = this.flushChain.then(() => this.flushOnce());
    return this.flushChain;
  }

  /** Stops the interval, writes what is buffered and closes DuckDB. Rows that still fail are lost. */
  async close(): Promise<void> {
    if (this.closed) return;
    clearInterval(this.timer);
    await this.flush();
    this.closed = true;
    const lost = this.queue.takeAll();
    if (lost.length > 0) {
      this.logger.error(
        { rows: lost.length, tables: [...new Set(lost.map(({ table }) => qualifiedName(table)))] },
        'inference table rows lost at shutdown, because the last flush failed',
      );
    }
    const duckdb = await this.duckdb?.catch(() => undefined);
    duckdb?.connection.closeSync();
    duckdb?.instance.closeSync();
  }

  private async flushOnce(): Promise<void> {
    this.sizeFlushQueued = false;
    const batch = this.queue.takeAll();
    if (batch.length === 0) return;
    this.flushingRows = batch.length;
    this.flushingChars = batch.reduce((sum, item) => sum + item.size, 0);

    const byTable = new Map<string, { table: TableName; rows: PayloadRow[] }>();
    for (const { table, row } of batch) {
      const key = qualifiedName(table);
      const group = byTable.get(key) ?? { table, rows: [] };
      group.rows.push(row);
      byTable.set(key, group);
    }

    const failed: BufferedRow[] = [];
    for (const [name, { table, rows }] of byTable) {
      const startedAt = Date.now();
      try {
        const ref = await this.appendVersion(table, rows);
        this.logger.info({ table: name, version: ref.version, rows: rows.length, durationMs: Date.now() - startedAt }, 'inference table rows written');
      } catch (error) {
        for (const row of rows) failed.push({ table, row, size: row.request.length + row.response.length });
        this.logger.error(
          { table: name, rows: rows.length, error: error instanceof Error ? error.message : String(error) },
          'inference table flush failed, the rows stay buffered for the next flush',
        );
      }
    }

    this.flushingRows = 0;
    this.flushingChars = 0;
    if (failed.length > 0) {
      this.retryNotBefore = Date.now() + this.flushIntervalMs;
      this.queue.restore(failed);
      if (this.overLimit()) this.dropOldest();
    }
  }

  /**
   * Commits the rows as the next version of `table`: the snapshot is the previous snapshot plus the
   * rows, and the change feed contains just the rows as inserts.
   */
  private async appendVersion(table: TableName, rows: PayloadRow[]): Promise<TableRef> {
    const { connection } = await this.openDuckDB();
    const previous = this.catalog.latest(table);
    const snapshot = this.catalog.stagingPath(table, 'payload');
    const changes = this.catalog.stagingPath(table, 'payload-changes');
    try {
      await connection.run(`CREATE OR REPLACE TABLE ${BATCH_TABLE} (${BATCH_COLUMNS})`);
      await this.appendRows(await connection.createAppender(BATCH_TABLE), rows);

      await connection.run(`COPY (SELECT 'insert' AS _change_type, * FROM (${SELECT_PAYLOAD_COLUMNS})) TO ${sqlString(changes)} (FORMAT parquet)`);
      const content = previous
        ? `SELECT * FROM read_parquet(${sqlString(this.catalog.snapshotPath({ ...table, version: previous.version }))}) UNION ALL BY NAME ${SELECT_PAYLOAD_COLUMNS}`
        : SELECT_PAYLOAD_COLUMNS;
      // NOTE: every flush rewrites the whole table, so its cost grows with the table. Delta Lake avoids
      // this by adding data files instead.
      await connection.run(`COPY (${content}) TO ${sqlString(snapshot)} (FORMAT parquet)`);

      return await this.catalog.commit(
        table,
        snapshot,
        {
          rowCount: (previous?.rowCount ?? 0) + rows.length,
          sourceHash: batchHash(rows),
          changes: { inserted: rows.length, updated: 0, deleted: 0 },
        },
        { expectedVersion: previous?.version ?? 0, stagedChanges: changes, operation: 'APPEND' },
      );
    } finally {
      // commit() moves the staged files into place, so these only remove what a failure left behind.
      fs.rmSync(snapshot, { force: true });
      fs.rmSync(changes, { force: true });
      await connection.run(`DROP TABLE IF EXISTS ${BATCH_TABLE}`);
    }
  }

  private async appendRows(appender: DuckDBAppender, rows: PayloadRow[]): Promise<void> {
    try {
      for (let start = 0; start < rows.length; start += APPEND_CHUNK_ROWS) {
        if (start > 0) await yieldToEventLoop();
        for (const row of rows.slice(start, start + APPEND_CHUNK_ROWS)) appendRow(appender, row);
      }
    } finally {
      appender.closeSync();
    }
  }

  private overLimit(): boolean {
    return this.bufferedRows > this.maxBufferedRows || this.queue.size + this.flushingChars > this.maxBufferedChars;
  }

  /** Drops the oldest queued rows until the buffer fits, counting them per endpoint. */
  private dropOldest(): void {
    const dropped: BufferedRow[] = [];
    while (this.queue.length > 0 && this.overLimit()) dropped.push(...this.queue.shift(1));
    const byEndpoint = new Map<string, number>();
    for (const { row } of dropped) byEndpoint.set(row.endpointName, (byEndpoint.get(row.endpointName) ?? 0) + 1);
    for (const [endpoint, count] of byEndpoint) this.options.metrics.recordDroppedPayloadRows(endpoint, count);

    this.droppedSinceWarning += dropped.length;
    const now = Date.now();
    if (now - this.lastDropWarningAt >= DROP_WARNING_INTERVAL_MS) {
      this.logger.warn(
        {
          droppedRows: this.droppedSinceWarning,
          maxBufferedRows: this.maxBufferedRows,
          maxBufferedChars: this.maxBufferedChars,
          endpoints: [...byEndpoint.keys()],
        },
        'inference table buffer full, dropped the oldest rows',
      );
      this.droppedSinceWarning = 0;
      this.lastDropWarningAt = now;
    }
  }

  /**
   * Opens one in-memory DuckDB for all flushes, with extension downloads off like the ingestion's
   * DuckDB. One thread is enough for the small batches and leaves the CPU to the model servers. The
   * module loads on the first flush, so a plane without inference tables never loads DuckDB.
   */
  private openDuckDB(): Promise<{ instance: DuckDBInstance; connection: DuckDBConnection }> {
    this.duckdb ??= (async () => {
      const { DuckDBInstance } = await import('@duckdb/node-api');
      const instance = await DuckDBInstance.create(':memory:', {
        autoinstall_known_extensions: 'false',
        autoload_known_extensions: 'false',
        threads: '1',
      });
      return { instance, connection: await instance.connect() };
    })();
    // A failed open is tried again by the next flush instead of failing every later flush.
    this.duckdb.catch(() => {
      this.duckdb = undefined;
    });
    return this.duckdb;
  }
}

function appendRow(appender: DuckDBAppender, row: PayloadRow): void {
  appender.appendVarchar(row.databricksRequestId);
  appendOptionalVarchar(appender, row.clientRequestId);
  appender.appendBigInt(BigInt(Math.round(row.timestampMs)));
  appender.appendInteger(row.statusCode);
  appender.appendBigInt(BigInt(Math.round(row.executionTimeMs)));
  appender.appendVarchar(row.request);
  appender.appendVarchar(typeof row.response === 'string' ? row.response : row.response.toString('utf8'));
  appender.appendVarchar(row.endpointName);
  appendOptionalVarchar(appender, row.servedEntityName);
  appendOptionalVarchar(appender, row.entityName);
  appendOptionalVarchar(appender, row.entityVersion);
  if (row.coldStartMs === undefined) appender.appendNull();
  else appender.appendBigInt(BigInt(Math.round(row.coldStartMs)));
  appender.endRow();
}

function appendOptionalVarchar(appender: DuckDBAppender, value: string | undefined): void {
  if (value === undefined) appender.appendNull();
  else appender.appendVarchar(value);
}

function sqlString(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/**
 * Source hash of a batch: the hash of its request ids. LocalCatalog.commit returns the newest version
 * instead of committing when its hash is the same, so the same batch is never appended twice in a row.
 */
function batchHash(rows: PayloadRow[]): string {
  const hash = createHash('sha256');
  for (const row of rows) hash.update(row.databricksRequestId).update('\n');
  return `payload:${hash.digest('hex')}`;
}
