import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { TableName, TableRef, TableVersionInfo } from './port';

const HISTORY_FILE = '_history.json';

export interface CommitOptions {
  /** Version the write was computed from; a different newest version fails the commit. */
  expectedVersion?: number;
  /** Staged change feed of this version. */
  stagedChanges?: string;
  operation?: TableVersionInfo['operation'];
}

/** Another writer committed a version between reading the table and committing; retry the write. */
export class ConcurrentWriteError extends Error {
  override name = 'ConcurrentWriteError';
}
const LOCK_DIR = '.lock';
const LOCK_STALE_MS = 10 * 60 * 1000;

/**
 * Catalog of versioned Parquet tables under one folder: `<root>/<catalog>/<schema>/<table>/v<N>.parquet`
 * plus `_history.json`. A version is committed by renaming a fully written staging file into place and
 * then rewriting the history atomically, so readers never see a half-written version.
 */
export class LocalCatalog {
  constructor(readonly root: string) {}

  tableDir(table: TableName): string {
    return path.join(this.root, table.catalog, table.schema, table.name);
  }

  /** Returns the path of the Parquet file of one table version. Readers (DuckDB, pandas) open it directly. */
  snapshotPath(ref: TableRef): string {
    return path.join(this.tableDir(ref), `v${ref.version}.parquet`);
  }

  /**
   * Path of the change feed of one version: the rows it inserted, updated (post-image) and deleted, in
   * a `_change_type` column, like Delta Lake's change data feed.
   */
  changesPath(ref: TableRef): string {
    return path.join(this.tableDir(ref), '_changes', `v${ref.version}.parquet`);
  }

  /**
   * DuckDB relation of one version's change feed. A version without a change-feed file (a first
   * write) inserted every row of its snapshot, so its feed is read from the snapshot, as Delta Lake
   * reads inserts from the data files.
   */
  changeFeedSql(ref: TableRef): string {
    const file = this.changesPath(ref);
    if (fs.existsSync(file)) return `read_parquet('${file.replace(/'/g, "''")}')`;
    return `(SELECT 'insert' AS _change_type, * FROM read_parquet('${this.snapshotPath(ref).replace(/'/g, "''")}'))`;
  }

  /** Returns a fresh path where a writer stages a Parquet file before `commit`. */
  stagingPath(table: TableName, tag: string): string {
    const dir = path.join(this.tableDir(table), '_staging');
    fs.mkdirSync(dir, { recursive: true });
    return path.join(dir, `${tag}-${randomUUID()}.parquet`);
  }

  history(table: TableName): TableVersionInfo[] {
    const file = path.join(this.tableDir(table), HISTORY_FILE);
    if (!fs.existsSync(file)) return [];
    return JSON.parse(fs.readFileSync(file, 'utf8')) as TableVersionInfo[];
  }

  latest(table: TableName): TableVersionInfo | undefined {
    const entries = this.history(table);
    return entries[entries.length - 1];
  }

  /** Returns the newest version written from `sourceHash`, so a repeated ingestion can reuse it. */
  findBySourceHash(table: TableName, sourceHash: string): TableVersionInfo | undefined {
    const latest = this.latest(table);
    return latest?.sourceHash === sourceHash ? latest : undefined;
  }

  /**
   * Commits a staged Parquet file as the next version of `table` and returns its reference. The table
   * lock serialises writers from different processes. When the newest version already came from the
   * same source hash, a concurrent ingestion of the same file won the race. Then the staged file is
   * dropped and that version is returned, so one source never produces two versions in a row.
   */
  async commit(
    table: TableName,
    stagedFile: string,
    entry: Omit<TableVersionInfo, 'version' | 'timestamp' | 'operation'>,
    options: CommitOptions = {},
  ): Promise<TableRef> {
    return this.withLock(table, () => {
      const history = this.history(table);
      const latest = history[history.length - 1];
      if (latest && latest.sourceHash === entry.sourceHash) {
        fs.rmSync(stagedFile, { force: true });
        if (options.stagedChanges) fs.rmSync(options.stagedChanges, { force: true });
        return { ...table, version: latest.version };
      }
      if (options.expectedVersion !== undefined && (latest?.version ?? 0) !== options.expectedVersion) {
        throw new ConcurrentWriteError(
          `Table ${table.catalog}.${table.schema}.${table.name} moved from version ${options.expectedVersion} to ` +
            `${latest?.version ?? 0} while this write was prepared; read the new version and write again.`,
        );
      }
      const version = (latest?.version ?? 0) + 1;
      const ref: TableRef = { ...table, version };
      fs.renameSync(stagedFile, this.snapshotPath(ref));
      if (options.stagedChanges) {
        fs.mkdirSync(path.dirname(this.changesPath(ref)), { recursive: true });
        fs.renameSync(options.stagedChanges, this.changesPath(ref));
      }
      const info: TableVersionInfo = {
        version,
        timestamp: new Date().toISOString(),
        operation: options.operation ?? 'WRITE',
        ...entry,
      };
      writeFileAtomic(path.join(this.tableDir(table), HISTORY_FILE), JSON.stringify([...history, info], null, 2));
      return ref;
    });
  }

  private async withLock<T>(table: TableName, action: () => T): Promise<T> {
    const lock = path.join(this.tableDir(table), LOCK_DIR);
    fs.mkdirSync(this.tableDir(table), { recursive: true });
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        fs.mkdirSync(lock);
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        if (isStale(lock)) {
          fs.rmSync(lock, { recursive: true, force: true });
          continue;
        }
        if (Date.now() > deadline) {
          throw new Error(`Timed out after 60 s waiting for the lock ${lock}; remove it if no ingestion is running.`);
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    try {
      return action();
    } finally {
      fs.rmSync(lock, { recursive: true, force: true });
    }
  }
}

function isStale(lock: string): boolean {
  try {
    return Date.now() - fs.statSync(lock).mtimeMs > LOCK_STALE_MS;
  } catch {
    return false;
  }
}

/** Writes a file through a temporary sibling and a rename, so readers see the old or the new content. */
export function writeFileAtomic(file: string, content: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
  fs.writeFileSync(tmp, content);
  fs.renameSync(tmp, file);
}
