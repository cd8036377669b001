import crypto from 'node:crypto';
import fs from 'node:fs';
import { DuckDBInstance, type DuckDBConnection } from '@duckdb/node-api';
import { log } from '@temporalio/activity';
import { invalidInput } from '../common/errors';
import { LocalCatalog } from '../platform/catalog/local';
import type { TableName, TableVersionInfo } from '../platform/catalog/port';
import type { IngestResult, IngestSpec, NumericFeature, QualityReport, TableRef } from '../workflows/types';
import { readCsvHeader } from './csv-header';
import { hasInvalidRows, quarantineInvalidRows } from './quarantine';
import { stageMerge, type ChangeCounts, type StagedMerge } from './merge';
import { cleanSelectSql, quoteIdent, quoteLiteral, readRawSql, renamed, requiredColumns } from './ingestion-sql';
import { DUCKDB } from './sql-dialect';

export interface IngestInput {
  sourcePath: string;
  catalog: string;
  schema: string;
  spec: IngestSpec;
}

const NO_CHANGES: ChangeCounts = { inserted: 0, updated: 0, deleted: 0 };

/** How many bad values an error message lists. */
const EXAMPLES = 5;

/** Opens an in-memory DuckDB with extension downloads off: this machine may have no internet. */
export async function openDuckDB(): Promise<{ instance: DuckDBInstance; connection: DuckDBConnection }> {
  const instance = await DuckDBInstance.create(':memory:', {
    autoinstall_known_extensions: 'false',
    autoload_known_extensions: 'false',
  });
  return { instance, connection: await instance.connect() };
}

async function rows(connection: DuckDBConnection, sql: string): Promise<Record<string, unknown>[]> {
  return (await connection.runAndReadAll(sql)).getRowObjectsJS() as Record<string, unknown>[];
}

export async function sha256File(file: string): Promise<string> {
  const hash = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
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

/** Fails with every problem of the raw file that would make a table version wrong. */
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
       WHERE ${DUCKDB.tryCast(`trim(${column})`, DUCKDB.numericType(feature.dtype))} IS NULL ORDER BY ${DUCKDB.sourceLine()} LIMIT ${EXAMPLES}`,
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

async function readRaw(connection: DuckDBConnection, file: string): Promise<void> {
  let header;
  try {
    header = readCsvHeader(file);
  } catch (error) {
    throw invalidInput(
      `Data file ${file} is not a CSV file: ${(error as Error).message}. Pass a delimited text file with a header row.`,
    );
  }
  try {
    await connection.run(readRawSql(file, header.columns, header.delimiter));
  } catch (error) {
    const message = (error as Error).message;
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

/**
 * Reads a bookings CSV, validates and cleans it, splits it by booking id, and writes new versions of
 * the train, test and extra tables. Idempotent: when every table's newest version came from the same
 * file content and settings, it returns those versions and writes nothing.
 */
export async function ingestBookings(catalogRoot: string, input: IngestInput): Promise<IngestResult> {
  const { sourcePath: file, spec } = input;
  checkReadable(file);
  const catalog = new LocalCatalog(catalogRoot);
  const table = (name: string): TableName => ({ catalog: input.catalog, schema: input.schema, name });
  const names = { train: table(spec.tables.train), test: table(spec.tables.test), extra: table(spec.tables.extra) };

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

  const { instance, connection } = await openDuckDB();
  try {
    await readRaw(connection, file);
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
    await connection.run(`CREATE TEMP TABLE clean AS ${cleanSelectSql(spec, new Date().toISOString(), DUCKDB)}`);

    const segment = quoteIdent(renamed(spec, spec.trainingSegment.column));
    const inSegment = `${segment} = ${quoteLiteral(spec.trainingSegment.value)}`;
    const id = quoteIdent(renamed(spec, spec.idColumn));
    const selections = {
      train: `${inSegment} AND NOT _is_test`,
      test: `${inSegment} AND _is_test`,
      extra: `NOT (${inSegment})`,
    };

    const [stats] = await rows(
      connection,
      `SELECT count(*) FILTER (WHERE ${selections.train})::INTEGER AS train,
              count(*) FILTER (WHERE ${selections.test})::INTEGER AS test,
              count(*) FILTER (WHERE ${selections.extra})::INTEGER AS extra,
              count(*) FILTER (WHERE _date_normalised)::INTEGER AS normalised,
              avg(${quoteIdent(renamed(spec, spec.target.name))}) FILTER (WHERE ${selections.train}) AS canceled_share
       FROM clean`,
    );
    if (Number(stats.train) === 0 || Number(stats.test) === 0) {
      throw invalidInput(
        `Data file ${file} gives ${stats.train} training and ${stats.test} test rows in segment ` +
          `${spec.trainingSegment.column} = ${spec.trainingSegment.value}; both must be non-empty. ` +
          'Pass a larger file or change training_segment in config/project.yml.',
      );
    }
    const textColumns = [spec.idColumn, ...spec.categoricalFeatures, spec.target.name].map(quoteIdent);
    const otherColumns = requiredColumns(spec)
      .filter((c) => c !== spec.idColumn)
      .map(quoteIdent)
      .join(', ');
    const [quality] = await rows(
      connection,
      `SELECT (${textColumns.map((c) => `count(*) FILTER (WHERE ${c} <> trim(${c}))`).join(' + ')})::INTEGER AS trimmed,
              (count(*) - (SELECT count(*) FROM (SELECT DISTINCT ${otherColumns} FROM raw)))::INTEGER AS duplicates
       FROM raw`,
    );
    // Every later step reads `clean`; freeing the text copy of the file lowers the memory peak.
    await connection.run('DROP TABLE raw');
    const report: QualityReport = {
      sourceFile: file,
      sourceSha256: fileSha,
      rowsIn,
      rowsTrain: Number(stats.train),
      rowsTest: Number(stats.test),
      rowsExtra: Number(stats.extra),
      arrivalDatesNormalised: Number(stats.normalised),
      canceledShareTrain: Number(Number(stats.canceled_share).toFixed(4)),
      valuesTrimmed: Number(quality.trimmed),
      duplicateRowsIgnoringId: Number(quality.duplicates),
      rowsQuarantined,
    };

    // Stage all three merges before committing any, so a failure leaves every table as it was.
    const keys = Object.keys(names) as (keyof typeof names)[];
    const allKeys = `SELECT ${id} FROM clean`;
    const staged = {} as Record<keyof typeof names, { merge: StagedMerge; previous?: TableVersionInfo }>;
    for (const key of keys) {
      if (existing[key]) continue;
      const previous = catalog.latest(names[key]);
      const batch = `SELECT * EXCLUDE (_date_normalised, _is_test) FROM clean WHERE ${selections[key]}`;
      staged[key] = { merge: await stageMerge(connection, catalog, names[key], previous, batch, renamed(spec, spec.idColumn), allKeys), previous };
    }

    const refs = {} as Record<keyof typeof names, TableRef>;
    const changes = {} as Record<keyof typeof names, ChangeCounts>;
    for (const key of keys) {
      const reuse = existing[key];
      if (reuse) {
        // An earlier attempt committed this table before failing; keep its version.
        refs[key] = { ...names[key], version: reuse.version };
        changes[key] = reuse.changes ?? { inserted: 0, updated: 0, deleted: 0 };
        continue;
      }
      const { merge, previous } = staged[key];
      changes[key] = merge.counts;
      if (previous && merge.counts.inserted + merge.counts.updated + merge.counts.deleted === 0) {
        // Nothing changed: a new version would only repeat the stored one.
        fs.rmSync(merge.snapshot, { force: true });
        fs.rmSync(merge.changes, { force: true });
        refs[key] = { ...names[key], version: previous.version };
        continue;
      }
      refs[key] = await catalog.commit(
        names[key],
        merge.snapshot,
        { rowCount: merge.rowCount, sourceHash, changes: merge.counts, report: report as unknown as Record<string, unknown> },
        { expectedVersion: previous?.version ?? 0, stagedChanges: merge.changes, operation: previous ? 'MERGE' : 'WRITE' },
      );
    }
    const quarantine =
      rowsQuarantined > 0
        ? await writeQuarantine(connection, catalog, table(spec.tables.quarantine), { file, sourceHash, rowCount: rowsQuarantined })
        : undefined;
    log.info('Ingested bookings', { file, ...report, versions: refs, changes, quarantine });
    return { ...refs, reused: false, report, changes, ...(quarantine ? { quarantine } : {}) };
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}
