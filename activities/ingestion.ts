import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { log } from '@temporalio/activity';
import { invalidConfig, invalidInput, transient } from '../common/errors';
import { LocalCatalog } from '../platform/catalog/local';
import type { TableName, TableVersionInfo } from '../platform/catalog/port';
import type { IngestResult, IngestSpec, NumericFeature, QualityReport, TableRef } from '../workflows/types';
import { readCsvHeader, type CsvHeader } from './csv-header';
import { ingestInOnePass } from './ingestion-one-pass';
import { hasInvalidRows, quarantineInvalidRows } from './quarantine';
import { stageMerge, type Batch, type ChangeCounts, type StagedMerge } from './merge';
import {
  cleanSelectSql,
  duplicateRowsSql,
  quoteIdent,
  quoteLiteral,
  readRawSql,
  renamed,
  requiredColumns,
  SPLIT_TABLES,
  type SplitTable,
  splitTableSql,
} from './ingestion-sql';
import { DUCKDB } from './sql-dialect';

export interface IngestInput {
  sourcePath: string;
  catalog: string;
  schema: string;
  spec: IngestSpec;
}

export interface IngestOptions {
  /** Set false to skip the one-pass path; tests use it to compare both paths on the same file. */
  onePass?: boolean;
}

const NO_CHANGES: ChangeCounts = { inserted: 0, updated: 0, deleted: 0 };

/** How many bad values an error message lists. */
const EXAMPLES = 5;

/**
 * Memory DuckDB may use for one ingestion before it spills to disk. DuckDB's own default, 80 % of RAM,
 * would let one large file starve the worker's other activities. MLOPS_DUCKDB_MEMORY_LIMIT overrides it.
 */
const DEFAULT_MEMORY_LIMIT = '1GB';

/** Returns the DuckDB memory limit, failing with the variable's name when MLOPS_DUCKDB_MEMORY_LIMIT is malformed. */
function duckdbMemoryLimit(): string {
  const value = process.env.MLOPS_DUCKDB_MEMORY_LIMIT ?? DEFAULT_MEMORY_LIMIT;
  if (!/^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$/i.test(value.trim())) {
    throw invalidConfig(`Invalid MLOPS_DUCKDB_MEMORY_LIMIT=${value}: expected a size such as 512MB or 2GB. Fix or unset it.`);
  }
  return value.trim();
}

/**
 * Opens an in-memory DuckDB with extension downloads off (this machine may have no internet). With a
 * `spillDirectory`, DuckDB keeps to the memory limit and spills what does not fit there.
 */
export async function openDuckDB(
  spillDirectory?: string,
): Promise<{ instance: DuckDBInstance; connection: DuckDBConnection }> {
  const options: Record<string, string> = {
    autoinstall_known_extensions: 'false',
    autoload_known_extensions: 'false',
  };
  if (spillDirectory) {
    options.memory_limit = duckdbMemoryLimit();
    options.temp_directory = spillDirectory;
  }
  const instance = await DuckDBInstance.create(':memory:', options);
  return { instance, connection: await instance.connect() };
}

async function rows(connection: DuckDBConnection, sql: string): Promise<Record<string, unknown>[]> {
  return (await connection.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[];
}

export async function sha256File(file: string): Promise<string> {
  const hash = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function checkReadable(file: string): void {
  try {
    const stat = fs.statSync(file);
    if (!stat.isFile()) throw invalidInput(`Data file ${file} is not a regular file. Pass the path of a CSV file.`);
    if (stat.size === 0) throw invalidInput(`Data file ${file} is empty. Pass a CSV file with a header row and bookings.`);
    fs.accessSync(file, fs.constants.R_OK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw invalidInput(
        `Data file not found: ${file}. Pass an existing bookings CSV with --data PATH (or HOTEL_DATA_CSV in tests).`,
      );
    }
    if (code === 'EACCES') throw invalidInput(`Data file ${file} is not readable: permission denied. Fix its permissions.`);
    throw error;
  }
}

/**
 * Appends the rows of the temp table `quarantined` (all raw columns as text, plus `_line` and
 * `_reasons`) to the quarantine table as a new version, with the source file and ingestion time.
 */
async function writeQuarantine(
  connection: DuckDBConnection,
  catalog: LocalCatalog,
  table: TableName,
  batch: { file: string; sourceHash: string; rowCount: number },
): Promise<TableRef> {
  const previous = catalog.latest(table);
  if (previous?.sourceHash === batch.sourceHash) return { ...table, version: previous.version };
  const staged = catalog.stagingPath(table, 'quarantine');
  const stored = previous
    ? `SELECT * FROM read_parquet(${quoteLiteral(catalog.snapshotPath({ ...table, version: previous.version }))}) UNION ALL BY NAME `
    : '';
  await connection.run(
    `COPY (${stored}SELECT *, ${quoteLiteral(batch.file)} AS _source_file, now()::TIMESTAMP AS update_timestamp_utc FROM quarantined)
     TO ${quoteLiteral(staged)} (FORMAT parquet)`,
  );
  return catalog.commit(
    table,
    staged,
    {
      rowCount: (previous?.rowCount ?? 0) + batch.rowCount,
      sourceHash: batch.sourceHash,
      changes: { inserted: batch.rowCount, updated: 0, deleted: 0 },
    },
    { expectedVersion: previous?.version ?? 0, operation: 'APPEND' },
  );
}

/** Fails when a numeric column has values outside the configured minimum and maximum. */
async function checkRange(connection: DuckDBConnection, file: string, feature: NumericFeature): Promise<void> {
  if (feature.min === undefined && feature.max === undefined) return;
  const value = `CAST(trim(${quoteIdent(feature.name)}) AS DOUBLE)`;
  const conditions = [
    ...(feature.min === undefined ? [] : [`${value} < ${feature.min}`]),
    ...(feature.max === undefined ? [] : [`${value} > ${feature.max}`]),
  ];
  const bad = await rows(
    connection,
    `SELECT ${quoteIdent(feature.name)} AS value, ${DUCKDB.sourceLine()}::INTEGER AS line, count(*) OVER ()::INTEGER AS total FROM raw
     WHERE ${conditions.join(' OR ')} ORDER BY ${DUCKDB.sourceLine()} LIMIT ${EXAMPLES}`,
  );
  if (bad.length === 0) return;
  const bounds = [feature.min === undefined ? '' : `>= ${feature.min}`, feature.max === undefined ? '' : `<= ${feature.max}`]
    .filter(Boolean)
    .join(' and ');
  const examples = bad.map((b) => `line ${b.line}: ${b.value}`).join('; ');
  throw invalidInput(
    `Data file ${file}, column ${feature.name}: ${bad[0].total} values are out of range; expected ${bounds} (${examples}). ` +
      'Fix or remove those rows.',
  );
}

/** Fails when the file lacks a required column or has no rows; returns the row count. */
async function checkStructure(connection: DuckDBConnection, file: string, spec: IngestSpec): Promise<number> {
  const present = new Set((await rows(connection, 'DESCRIBE raw')).map((r) => String(r.column_name)));
  const missing = requiredColumns(spec).filter((c) => !present.has(c));
  if (missing.length > 0) {
    throw invalidInput(
      `Data file ${file} is missing required columns: ${missing.join(', ')}. ` +
        `Found columns: ${[...present].join(', ')}. Use the hotel-reservations CSV layout.`,
    );
  }

  const [{ n }] = await rows(connection, 'SELECT count(*)::INTEGER AS n FROM raw');
  const rowCount = Number(n);
  if (rowCount === 0) throw invalidInput(`Data file ${file} has a header but no rows. Pass a file with bookings.`);
  return rowCount;
}

/** Fails on the first kind of invalid row, naming the column, the values and their lines. */
async function checkRows(connection: DuckDBConnection, file: string, spec: IngestSpec): Promise<void> {
  if (!(await hasInvalidRows(connection, spec))) return;
  const target = quoteIdent(spec.target.name);
  const known = Object.keys(spec.target.values).map(quoteLiteral).join(', ');
  const unknown = await rows(
    connection,
    `SELECT coalesce(${target}, '<empty>') AS value, count(*)::INTEGER AS count, min${DUCKDB.sourceLine()}::INTEGER AS line
     FROM raw WHERE ${target} IS NULL OR trim(${target}) NOT IN (${known}) GROUP BY 1 ORDER BY line LIMIT ${EXAMPLES}`,
  );
  if (unknown.length > 0) {
    const listed = unknown.map((u) => `'${u.value}' (${u.count} rows, first on line ${u.line})`).join(', ');
    throw invalidInput(
      `Data file ${file}, column ${spec.target.name}: unknown values ${listed}. ` +
        `Expected one of ${Object.keys(spec.target.values).join(', ')}; fix the rows or add a mapping in config/project.yml.`,
    );
  }

  for (const feature of spec.numericFeatures) {
    const column = quoteIdent(feature.name);
    const bad = await rows(
      connection,
      `SELECT ${column} AS value, ${DUCKDB.sourceLine()}::INTEGER AS line, count(*) OVER ()::INTEGER AS total FROM raw
       WHERE ${DUCKDB.numericValue(`trim(${column})`, feature.dtype)} IS NULL ORDER BY ${DUCKDB.sourceLine()} LIMIT ${EXAMPLES}`,
    );
    if (bad.length > 0) {
      const examples = bad.map((b) => `line ${b.line}: ${JSON.stringify(b.value)}`).join('; ');
      throw invalidInput(
        `Data file ${file}, column ${feature.name}: ${bad[0].total} values are not ${feature.dtype} (${examples}). ` +
          'Fix or remove those rows.',
      );
    }
    await checkRange(connection, file, feature);
  }

  for (const name of [spec.idColumn, ...spec.categoricalFeatures]) {
    const [{ empty }] = await rows(
      connection,
      `SELECT count(*)::INTEGER AS empty FROM raw WHERE ${quoteIdent(name)} IS NULL OR trim(${quoteIdent(name)}) = ''`,
    );
    if (Number(empty) > 0) {
      throw invalidInput(`Data file ${file}, column ${name}: ${empty} rows are empty. Every booking needs a value.`);
    }
  }

  const id = quoteIdent(spec.idColumn);
  const duplicates = await rows(
    connection,
    `SELECT trim(${id}) AS id, count(*)::INTEGER AS count FROM raw GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT ${EXAMPLES}`,
  );
  if (duplicates.length > 0) {
    const listed = duplicates.map((d) => `${d.id} (${d.count} times)`).join(', ');
    throw invalidInput(`Data file ${file}, column ${spec.idColumn}: duplicate booking ids ${listed}. Ids must be unique.`);
  }
}

/** Reads the header row; a file without one is not a CSV file. */
function readHeader(file: string): CsvHeader {
  try {
    return readCsvHeader(file);
  } catch (error) {
    throw invalidInput(
      `Data file ${file} is not a CSV file: ${(error as Error).message}. Pass a delimited text file with a header row.`,
    );
  }
}

async function readRaw(connection: DuckDBConnection, file: string, header: CsvHeader): Promise<void> {
  try {
    await connection.run(readRawSql(file, header.columns, header.delimiter));
  } catch (error) {
    const message = (error as Error).message;
    if (/^(Out of Memory Error|IO Error)/.test(message) || /No space left/.test(message)) {
      // The machine, not the file: another attempt may find memory or disk free.
      throw transient(`Reading ${file} failed for lack of resources: ${message.split('\n')[0]}`, error as Error);
    }
    const shape = /CSV Error on Line: (\d+)[\s\S]*?Expected Number of Columns: (\d+) Found: (\d+)/.exec(message);
    if (shape) {
      throw invalidInput(
        `Data file ${file}, line ${shape[1]}: expected ${shape[2]} fields, found ${shape[3]}. ` +
          'The line may be truncated or contain an unquoted delimiter; fix or remove it.',
      );
    }
    throw invalidInput(
      `Data file ${file} could not be read as CSV: ${message.split('\n').slice(0, 2).join(' ').replace(/\.+$/, '')}. ` +
        'Fix the file and ingest it again.',
    );
  }
}

/** Cleaned rows of one file, ready to be merged into the tables, with the figures of the quality report. */
interface PreparedBatches {
  batches: Record<SplitTable, Batch>;
  /** Query of every booking id in the file, whichever table it went to. */
  allKeys: string;
  report: Omit<QualityReport, 'sourceFile' | 'sourceSha256'>;
}

/**
 * Loads the file as text and checks every rule, failing with the column, the values and their lines,
 * or quarantining the rows. Then builds the cleaned rows in the temp table `clean` (the careful path).
 */
async function prepareCarefully(
  connection: DuckDBConnection,
  file: string,
  header: CsvHeader,
  spec: IngestSpec,
  ingestedAt: string,
): Promise<PreparedBatches> {
  await readRaw(connection, file, header);
  const rowsIn = await checkStructure(connection, file, spec);
  let rowsQuarantined = 0;
  if (spec.onInvalidRows === 'quarantine') {
    rowsQuarantined = await quarantineInvalidRows(connection, spec);
    if (rowsQuarantined === rowsIn) {
      const [first] = await rows(connection, 'SELECT _line, _reasons FROM quarantined LIMIT 1');
      throw invalidInput(
        `Data file ${file}: all ${rowsIn} rows are invalid (line ${first._line}: ${first._reasons}); nothing was ingested. ` +
          'Fix the file or check the column layout.',
      );
    }
  }
  await checkRows(connection, file, spec);
  await connection.run(
    `CREATE TEMP TABLE clean AS SELECT *, ${splitTableSql(spec)} AS _table FROM (${cleanSelectSql(spec, ingestedAt, DUCKDB)})`,
  );
  const target = quoteIdent(renamed(spec, spec.target.name));
  const [stats] = await rows(
    connection,
    `SELECT ${SPLIT_TABLES.map((t) => `count(*) FILTER (WHERE _table = '${t}')::INTEGER AS ${t}`).join(', ')},
            count(*) FILTER (WHERE _date_normalised)::INTEGER AS normalised,
            avg(${target}) FILTER (WHERE _table = 'train') AS canceled_share,
            (${duplicateRowsSql(spec, 'clean')}) AS duplicates
     FROM clean`,
  );
  const textColumns = [spec.idColumn, ...spec.categoricalFeatures, spec.target.name].map(quoteIdent);
  const [{ trimmed }] = await rows(
    connection,
    `SELECT (${textColumns.map((c) => `count(*) FILTER (WHERE ${c} <> trim(${c}))`).join(' + ')})::INTEGER AS trimmed FROM raw`,
  );
  // Every later step reads `clean`; freeing the text copy of the file lowers the memory peak.
  await connection.run('DROP TABLE raw');
  const batch = (table: SplitTable): Batch => ({
    sql: `SELECT * EXCLUDE (_date_normalised, _is_test, _table) FROM clean WHERE _table = '${table}'`,
  });
  return {
    batches: { train: batch('train'), test: batch('test'), extra: batch('extra') },
    allKeys: `SELECT ${quoteIdent(renamed(spec, spec.idColumn))} FROM clean`,
    report: {
      rowsIn,
      rowsTrain: Number(stats.train),
      rowsTest: Number(stats.test),
      rowsExtra: Number(stats.extra),
      arrivalDatesNormalised: Number(stats.normalised),
      canceledShareTrain: Number(Number(stats.canceled_share).toFixed(4)),
      valuesTrimmed: Number(trimmed),
      duplicateRowsIgnoringId: Number(stats.duplicates),
      rowsQuarantined,
      checks: 'careful',
    },
  };
}

/** Runs the one-pass path and returns its batches, or undefined when the file needs the careful path. */
async function prepareInOnePass(
  connection: DuckDBConnection,
  file: string,
  header: CsvHeader,
  spec: IngestSpec,
  ingestedAt: string,
  stagingDir: string,
): Promise<PreparedBatches | undefined> {
  let result;
  try {
    result = await ingestInOnePass(connection, file, header, spec, ingestedAt, stagingDir);
  } catch (error) {
    // The careful path reads the same file again and reports what is wrong with it.
    result = { accepted: false as const, reason: (error as Error).message.split('\n')[0] };
  }
  if (!result.accepted) {
    log.info('File needs the careful checks', { file, reason: result.reason });
    return undefined;
  }
  const { batches } = result;
  const id = quoteIdent(renamed(spec, spec.idColumn));
  const batch = (table: SplitTable): Batch => ({ sql: `SELECT * FROM read_parquet(${quoteLiteral(batches.files[table])}, hive_partitioning = false)`, file: batches.files[table] });
  return {
    batches: { train: batch('train'), test: batch('test'), extra: batch('extra') },
    allKeys: `SELECT ${id} FROM read_parquet([${SPLIT_TABLES.map((t) => quoteLiteral(batches.files[t])).join(', ')}], hive_partitioning = false)`,
    report: {
      rowsIn: batches.rowsIn,
      rowsTrain: batches.rows.train,
      rowsTest: batches.rows.test,
      rowsExtra: batches.rows.extra,
      arrivalDatesNormalised: batches.arrivalDatesNormalised,
      canceledShareTrain: Number(batches.canceledShareTrain.toFixed(4)),
      valuesTrimmed: 0,
      duplicateRowsIgnoringId: batches.duplicateRowsIgnoringId,
      rowsQuarantined: 0,
      checks: 'one-pass',
    },
  };
}

/**
 * Reads a bookings CSV, validates and cleans it, splits it by booking id, and writes new versions of
 * the train, test and extra tables. Idempotent: when every table's newest version came from the same
 * file content and settings, it returns those versions and writes nothing.
 */
export async function ingestBookings(
  catalogRoot: string,
  input: IngestInput,
  options: IngestOptions = {},
): Promise<IngestResult> {
  const { sourcePath: file, spec } = input;
  checkReadable(file);
  const catalog = new LocalCatalog(catalogRoot);
  const table = (name: string): TableName => ({ catalog: input.catalog, schema: input.schema, name });
  const names: Record<SplitTable, TableName> = {
    train: table(spec.tables.train),
    test: table(spec.tables.test),
    extra: table(spec.tables.extra),
  };

  const fileSha = await sha256File(file);
  const sourceHash = crypto.createHash('sha256').update(fileSha).update(JSON.stringify(spec)).digest('hex');
  const existing = {
    train: catalog.findBySourceHash(names.train, sourceHash),
    test: catalog.findBySourceHash(names.test, sourceHash),
    extra: catalog.findBySourceHash(names.extra, sourceHash),
  };
  if (existing.train && existing.test && existing.extra) {
    log.info('Source already ingested; reusing table versions', { sourceHash, file });
    return {
      train: { ...names.train, version: existing.train.version },
      test: { ...names.test, version: existing.test.version },
      extra: { ...names.extra, version: existing.extra.version },
      reused: true,
      report: existing.train.report as unknown as QualityReport,
      changes: {
        train: existing.train.changes ?? NO_CHANGES,
        test: existing.test.changes ?? NO_CHANGES,
        extra: existing.extra.changes ?? NO_CHANGES,
      },
    };
  }

  const header = readHeader(file);
  const ingestedAt = new Date().toISOString();
  const stagingDir = path.join(catalogRoot, '_staging', `ingest-${crypto.randomUUID()}`);
  fs.mkdirSync(stagingDir, { recursive: true });
  const { instance, connection } = await openDuckDB(path.join(stagingDir, 'spill'));
  try {
    const prepared =
      (options.onePass === false ? undefined : await prepareInOnePass(connection, file, header, spec, ingestedAt, path.join(stagingDir, 'batches'))) ??
      (await prepareCarefully(connection, file, header, spec, ingestedAt));
    const report: QualityReport = { sourceFile: file, sourceSha256: fileSha, ...prepared.report };
    if (report.rowsTrain === 0 || report.rowsTest === 0) {
      throw invalidInput(
        `Data file ${file} gives ${report.rowsTrain} training and ${report.rowsTest} test rows in segment ` +
          `${spec.trainingSegment.column} = ${spec.trainingSegment.value}; both must be non-empty. ` +
          'Pass a larger file or change training_segment in config/project.yml.',
      );
    }

    // Stage all three merges before committing any, so a failing check or merge leaves every table as
    // it was. A commit that fails midway leaves the earlier tables committed; a retry finds them by
    // their source hash and commits the rest.
    const id = renamed(spec, spec.idColumn);
    const staged = {} as Record<SplitTable, { merge: StagedMerge; previous?: TableVersionInfo }>;
    for (const key of SPLIT_TABLES) {
      if (existing[key]) continue;
      const previous = catalog.latest(names[key]);
      staged[key] = {
        merge: await stageMerge(connection, catalog, names[key], previous, prepared.batches[key], id, prepared.allKeys),
        previous,
      };
    }

    const refs = {} as Record<SplitTable, TableRef>;
    const changes = {} as Record<SplitTable, ChangeCounts>;
    for (const key of SPLIT_TABLES) {
      const reuse = existing[key];
      if (reuse) {
        // An earlier attempt committed this table before failing; keep its version.
        refs[key] = { ...names[key], version: reuse.version };
        changes[key] = reuse.changes ?? NO_CHANGES;
        continue;
      }
      const { merge, previous } = staged[key];
      changes[key] = merge.counts;
      if (previous && merge.counts.inserted + merge.counts.updated + merge.counts.deleted === 0) {
        // Nothing changed: a new version would only repeat the stored one.
        fs.rmSync(merge.snapshot, { force: true });
        if (merge.changes) fs.rmSync(merge.changes, { force: true });
        refs[key] = { ...names[key], version: previous.version };
        continue;
      }
      try {
        refs[key] = await catalog.commit(
          names[key],
          merge.snapshot,
          { rowCount: merge.rowCount, sourceHash, changes: merge.counts, report: report as unknown as Record<string, unknown> },
          { expectedVersion: previous?.version ?? 0, stagedChanges: merge.changes, operation: previous ? 'MERGE' : 'WRITE' },
        );
      } catch (error) {
        // Staged files of this and the later tables would otherwise stay in their _staging folders.
        for (const pending of Object.values(staged)) {
          fs.rmSync(pending.merge.snapshot, { force: true });
          if (pending.merge.changes) fs.rmSync(pending.merge.changes, { force: true });
        }
        throw error;
      }
    }
    const quarantine =
      report.rowsQuarantined > 0
        ? await writeQuarantine(connection, catalog, table(spec.tables.quarantine), {
            file,
            sourceHash,
            rowCount: report.rowsQuarantined,
          })
        : undefined;
    log.info('Ingested bookings', { file, ...report, versions: refs, changes, quarantine });
    return { ...refs, reused: false, report, changes, ...(quarantine ? { quarantine } : {}) };
  } finally {
    connection.closeSync();
    instance.closeSync();
    fs.rmSync(stagingDir, { recursive: true, force: true });
  }
}
