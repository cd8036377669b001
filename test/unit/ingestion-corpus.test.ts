import fs from 'node:fs';
import path from 'node:path';
import type { ApplicationFailure } from '@temporalio/common';
import { ingestBookings, openDuckDB, type IngestOptions } from '../../activities/ingestion';
import { BOOKING_COLUMNS, generateBookings } from '../../activities/synthetic';
import { LocalCatalog } from '../../platform/catalog/local';
import type { IngestResult } from '../../workflows/types';
import { column, quietActivityEnvironment, tempDir, testSpec } from '../helpers/fixtures';

// A corpus of small input files, each with its expected outcome. Every case first ingests a good file,
// so a failing case must leave all three tables at version 1.

type Rows = string[][];

interface Case {
  name: string;
  /** Writes the case's file into `dir` and returns its path. */
  make: (dir: string) => string;
  /** Expected error text; the case must succeed when absent. */
  error?: RegExp;
  check?: (result: IngestResult, catalog: LocalCatalog) => Promise<void>;
  /** How an accepted file is expected to be checked; one-pass unless given. */
  checks?: IngestResult['report']['checks'];
}

const HEADER = BOOKING_COLUMNS.join(',');

function baseRows(): Rows {
  return generateBookings(120, 3);
}

function write(dir: string, name: string, text: string | Buffer): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}

function csv(rows: Rows, header = HEADER, delimiter = ',', newline = '\n'): string {
  return [header, ...rows.map((row) => row.join(delimiter))].join(newline) + newline;
}

function withRow(edit: (rows: Rows) => void): Rows {
  const rows = baseRows();
  edit(rows);
  return rows;
}

async function tableRows(catalog: LocalCatalog, result: IngestResult): Promise<Record<string, unknown>[]> {
  const { instance, connection } = await openDuckDB();
  try {
    const union = [result.train, result.test, result.extra]
      .map((ref) => `SELECT * FROM read_parquet('${catalog.snapshotPath(ref)}')`)
      .join(' UNION ALL ');
    const reader = await connection.runAndReadAll(`SELECT *, CAST(date_of_arrival AS VARCHAR) AS arrival FROM (${union})`);
    return reader.getRowObjectsJson() as Record<string, unknown>[];
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

/** Rows sorted by id without their write time, so two ingestions of one file compare equal. */
function comparable(rows: Record<string, unknown>[]): Record<string, unknown>[] {
  return rows
    .map(({ update_timestamp_utc: _written, ...row }) => row)
    .sort((a, b) => String(a.booking_id).localeCompare(String(b.booking_id)));
}

const byId = (rows: Record<string, unknown>[], id: string) => rows.find((r) => r.booking_id === id)!;

const cases: Case[] = [
  {
    name: 'missing column',
    make: (dir) => {
      const keep = BOOKING_COLUMNS.map((_, i) => i).filter((i) => i !== column('lead_time'));
      return write(dir, 'missing.csv', csv(baseRows().map((r) => keep.map((i) => r[i])), keep.map((i) => BOOKING_COLUMNS[i]).join(',')));
    },
    error: /missing required columns: lead_time\./,
  },
  {
    name: 'extra column',
    make: (dir) => write(dir, 'extra.csv', csv(baseRows().map((r) => [...r, 'x']), `${HEADER},comment`)),
    check: async (result) => expect(result.report.rowsIn).toBe(120),
  },
  {
    name: 'reordered columns',
    make: (dir) => {
      const order = [...BOOKING_COLUMNS.keys()].reverse();
      return write(dir, 'reordered.csv', csv(baseRows().map((r) => order.map((i) => r[i])), order.map((i) => BOOKING_COLUMNS[i]).join(',')));
    },
    check: async (result, catalog) => {
      const rows = await tableRows(catalog, result);
      const original = baseRows()[0];
      expect(byId(rows, original[0]).lead_time).toBe(Number(original[column('lead_time')]));
    },
  },
  { name: 'empty file', make: (dir) => write(dir, 'empty.csv', ''), error: /is empty/ },
  { name: 'header only', make: (dir) => write(dir, 'header.csv', `${HEADER}\n`), error: /has a header but no rows/ },
  {
    name: 'UTF-8 byte-order mark',
    make: (dir) => write(dir, 'bom.csv', `\uFEFF${csv(baseRows())}`),
    check: async (result) => expect(result.report.rowsIn).toBe(120),
  },
  {
    name: 'CRLF line endings',
    make: (dir) => write(dir, 'crlf.csv', csv(baseRows(), HEADER, ',', '\r\n')),
    check: async (result, catalog) => {
      const rows = await tableRows(catalog, result);
      expect(rows.every((r) => !String(r.booking_id).includes('\r'))).toBe(true);
      expect(new Set(rows.map((r) => r.booking_status))).toEqual(new Set([0, 1]));
    },
  },
  {
    name: 'semicolon delimiter',
    make: (dir) => write(dir, 'semicolon.csv', csv(baseRows(), BOOKING_COLUMNS.join(';'), ';')),
    check: async (result) => expect(result.report.rowsIn).toBe(120),
  },
  {
    name: 'non-numeric value',
    make: (dir) => write(dir, 'text-number.csv', csv(withRow((rows) => (rows[6][column('no_of_adults')] = 'two')))),
    error: /column no_of_adults: 1 values are not int16 \(line 8: "two"\)/,
  },
  {
    name: 'negative lead_time',
    make: (dir) => write(dir, 'negative.csv', csv(withRow((rows) => (rows[2][column('lead_time')] = '-3')))),
    error: /column lead_time: 1 values are out of range; expected >= 0 \(line 4: -3\)/,
  },
  {
    name: 'month 13',
    make: (dir) =>
      write(dir, 'month13.csv', csv(withRow((rows) => {
        rows[0][column('arrival_year')] = '2017';
        rows[0][column('arrival_month')] = '13';
        rows[0][column('arrival_date')] = '5';
      }))),
    check: async (result, catalog) => {
      expect(result.report.arrivalDatesNormalised).toBeGreaterThanOrEqual(1);
      expect(byId(await tableRows(catalog, result), baseRows()[0][0]).arrival).toBe('2018-01-01');
    },
  },
  {
    name: 'day 0',
    make: (dir) =>
      write(dir, 'day0.csv', csv(withRow((rows) => {
        rows[0][column('arrival_year')] = '2018';
        rows[0][column('arrival_month')] = '6';
        rows[0][column('arrival_date')] = '0';
      }))),
    check: async (result, catalog) => {
      expect(byId(await tableRows(catalog, result), baseRows()[0][0]).arrival).toBe('2018-06-01');
    },
  },
  {
    name: 'unknown booking_status',
    make: (dir) => write(dir, 'status.csv', csv(withRow((rows) => (rows[9][column('booking_status')] = 'No-Show')))),
    error: /column booking_status: unknown values 'No-Show' \(1 rows, first on line 11\)/,
  },
  {
    name: 'duplicate booking_id',
    make: (dir) => write(dir, 'dupes.csv', csv(withRow((rows) => (rows[5][0] = rows[4][0])))),
    error: /column Booking_ID: duplicate booking ids INN00005 \(2 times\)/,
  },
  {
    name: 'quoted fields with commas',
    make: (dir) =>
      write(dir, 'quoted.csv', csv(withRow((rows) => {
        for (const row of rows) row[column('room_type_reserved')] = `"${row[column('room_type_reserved')]}, sea view"`;
      }))),
    check: async (result, catalog) => {
      const row = byId(await tableRows(catalog, result), baseRows()[0][0]);
      expect(String(row.room_type_reserved)).toMatch(/^Room_Type \d, sea view$/);
    },
  },
  {
    name: 'trailing spaces in categories',
    make: (dir) =>
      write(dir, 'spaces.csv', csv(withRow((rows) => {
        for (const row of rows) row[column('market_segment_type')] = `${row[column('market_segment_type')]}  `;
      }))),
    checks: 'careful',
    check: async (result) => {
      expect(result.report.valuesTrimmed).toBe(120);
      expect(result.report.rowsTrain + result.report.rowsTest).toBeGreaterThan(0);
    },
  },
  {
    name: 'price without decimals',
    make: (dir) => write(dir, 'price.csv', csv(withRow((rows) => (rows[0][column('avg_price_per_room')] = '65')))),
    check: async (result, catalog) => {
      expect(byId(await tableRows(catalog, result), baseRows()[0][0]).avg_price_per_room).toBe(65);
    },
  },
  {
    name: 'truncated last line',
    make: (dir) => {
      const text = csv(baseRows());
      return write(dir, 'truncated.csv', text.slice(0, text.length - 60));
    },
    error: /line 121: expected 19 fields, found \d+/,
  },
  {
    name: 'binary file',
    make: (dir) => write(dir, 'binary.csv', Buffer.from(Array.from({ length: 2048 }, (_, i) => (i * 31) % 256))),
    error: /is not a CSV file: it contains NUL bytes/,
  },
  {
    name: 'prose instead of CSV',
    make: (dir) => write(dir, 'notes.csv', 'These are my booking notes\nnothing tabular here\n'),
    error: /is not a CSV file: its first line has no comma, semicolon, tab or pipe/,
  },
  { name: 'directory path', make: (dir) => dir, error: /is not a regular file/ },
  { name: 'missing path', make: (dir) => path.join(dir, 'absent.csv'), error: /Data file not found: .*absent\.csv/ },
  {
    name: 'duplicate header column',
    make: (dir) => write(dir, 'twice.csv', csv(baseRows().map((r) => [...r, '1']), `${HEADER},lead_time`)),
    error: /header row names column lead_time twice/,
  },
  {
    name: 'fraction in an integer column',
    make: (dir) => write(dir, 'fraction.csv', csv(withRow((rows) => (rows[7][column('no_of_children')] = '1.5')))),
    error: /column no_of_children: 1 values are not int16 \(line 9: "1\.5"\)/,
  },
  {
    name: 'NaN price',
    make: (dir) => write(dir, 'nan.csv', csv(withRow((rows) => (rows[1][column('avg_price_per_room')] = 'NaN')))),
    error: /column avg_price_per_room: 1 values are not float64 \(line 3: "NaN"\)/,
  },
  {
    name: 'integer written with a decimal point',
    make: (dir) => write(dir, 'point-zero.csv', csv(withRow((rows) => (rows[0][column('lead_time')] = '12.0')))),
    check: async (result, catalog) => {
      expect(byId(await tableRows(catalog, result), baseRows()[0][0]).lead_time).toBe(12);
    },
  },
  {
    name: 'empty category value',
    make: (dir) => write(dir, 'blank.csv', csv(withRow((rows) => (rows[3][column('room_type_reserved')] = '')))),
    error: /column room_type_reserved: 1 rows are empty/,
  },
];

describe('ingestion bad-input corpus', () => {
  it('has at least 20 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(20);
  });

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, testCase) => {
    const root = tempDir('corpus-catalog');
    const dir = tempDir('corpus-data');
    const good = path.join(dir, 'good.csv');
    fs.writeFileSync(good, csv(generateBookings(150, 99).map((r) => [`GOOD${r[0]}`, ...r.slice(1)])));
    const run = (file: string, catalogRoot = root, options: IngestOptions = {}) => {
      const spec = testSpec(file);
      const input = { sourcePath: file, catalog: spec.catalog, schema: spec.schema, spec: spec.ingest };
      return quietActivityEnvironment().run(ingestBookings, catalogRoot, input, options) as Promise<IngestResult>;
    };
    await run(good);

    const file = testCase.make(dir);
    const catalog = new LocalCatalog(root);
    const versions = () =>
      ['train_set', 'test_set', 'extra_set'].map((name) => catalog.latest({ catalog: 'mlops_dev', schema: 'acikgozm', name })?.version);

    if (testCase.error) {
      const failure = (await run(file).then(
        () => undefined,
        (error: ApplicationFailure) => error,
      )) as ApplicationFailure | undefined;
      expect(failure).toBeDefined();
      expect(failure!.type).toBe('InvalidInput');
      expect(failure!.nonRetryable).toBe(true);
      expect(failure!.message).toContain(file);
      expect(failure!.message).toMatch(testCase.error);
      expect(versions()).toEqual([1, 1, 1]);
    } else {
      const result = await run(file);
      expect(versions()).toEqual([2, 2, 2]);
      await testCase.check?.(result, catalog);
      expect(result.report.checks).toBe(testCase.checks ?? 'one-pass');

      // The careful path, forced on the same two files, must write the same rows and report.
      const carefulRoot = tempDir('corpus-careful');
      await run(good, carefulRoot, { onePass: false });
      const careful = await run(file, carefulRoot, { onePass: false });
      expect(careful.report.checks).toBe('careful');
      expect(comparable(await tableRows(new LocalCatalog(carefulRoot), careful))).toEqual(
        comparable(await tableRows(catalog, result)),
      );
      expect({ ...careful.report, checks: undefined }).toEqual({ ...result.report, checks: undefined });
      expect(careful.changes).toEqual(result.changes);
    }
  });
});
