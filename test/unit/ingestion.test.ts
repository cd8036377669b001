import fs from 'node:fs';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { ingestBookings, type IngestInput } from '../../activities/ingestion';
import { arrivalDateSql, isTestSql } from '../../activities/ingestion-sql';
import { BOOKING_COLUMNS } from '../../activities/synthetic';
import { LocalCatalog } from '../../platform/catalog/local';
import type { IngestResult } from '../../workflows/types';
import { column, quietActivityEnvironment, realDataPath, tempDir, testSpec, writeBookings, queryRows } from '../helpers/fixtures';

function ingestInput(file: string): IngestInput {
  const spec = testSpec(file);
  return { sourcePath: file, catalog: spec.catalog, schema: spec.schema, spec: spec.ingest };
}

async function ingest(catalogRoot: string, file: string): Promise<IngestResult> {
  return quietActivityEnvironment().run(ingestBookings, catalogRoot, ingestInput(file)) as Promise<IngestResult>;
}

async function ingestFailure(catalogRoot: string, file: string): Promise<ApplicationFailure> {
  try {
    await ingest(catalogRoot, file);
  } catch (error) {
    return error as ApplicationFailure;
  }
  throw new Error(`ingesting ${file} should have failed`);
}

function versions(catalogRoot: string): number[] {
  const catalog = new LocalCatalog(catalogRoot);
  return ['train_set', 'test_set', 'extra_set'].map(
    (name) => catalog.latest({ catalog: 'mlops_dev', schema: 'acikgozm', name })?.version ?? 0,
  );
}

const query = queryRows;

describe('arrival date normalisation', () => {
  it.each([
    [2018, 2, 29, '2018-03-01'],
    [2025, 2, 31, '2025-03-01'],
    [2024, 13, 5, '2025-01-01'],
    [2023, 12, 32, '2024-01-01'],
    [2020, 2, 29, '2020-02-29'],
    [2018, 6, 0, '2018-06-01'],
    [2018, 4, 31, '2018-05-01'],
    [2018, 7, 15, '2018-07-15'],
  ])('%i-%i-%i becomes %s', async (year, month, day, expected) => {
    const [row] = await query(`SELECT CAST(${arrivalDateSql(String(year), String(month), String(day))} AS VARCHAR) AS d`);
    expect(row.d).toBe(expected);
  });
});

describe('test split', () => {
  it('assigns a booking id to the same side every time', async () => {
    const rows = await query(
      `SELECT ${isTestSql("'INN00001'", 0.2)} AS a, ${isTestSql("'INN00001'", 0.2)} AS b, ${isTestSql("'INN00001'", 0.2)} AS c`,
    );
    expect(rows[0].a).toBe(rows[0].b);
    expect(rows[0].b).toBe(rows[0].c);
  });

  it('puts about the test fraction of ids in the test side', async () => {
    const [row] = await query(
      `SELECT avg(CASE WHEN ${isTestSql("'INN' || lpad(CAST(i AS VARCHAR), 5, '0')", 0.2)} THEN 1 ELSE 0 END) AS share
       FROM range(1, 20001) t(i)`,
    );
    expect(Number(row.share)).toBeGreaterThan(0.19);
    expect(Number(row.share)).toBeLessThan(0.21);
  });
});

describe('ingestBookings', () => {
  it('writes train, test and extra tables with the cleaned columns', async () => {
    const root = tempDir('catalog');
    const file = writeBookings(tempDir('data'), 'bookings.csv', { rows: 600 });
    const result = await ingest(root, file);

    expect(result.reused).toBe(false);
    expect([result.train.version, result.test.version, result.extra.version]).toEqual([1, 1, 1]);
    expect(result.report.rowsIn).toBe(600);
    expect(result.report.rowsTrain + result.report.rowsTest + result.report.rowsExtra).toBe(600);

    const catalog = new LocalCatalog(root);
    const rows = await query(`SELECT * FROM read_parquet('${catalog.snapshotPath(result.train)}')`);
    expect(rows).toHaveLength(result.report.rowsTrain);
    expect(Object.keys(rows[0])).toEqual(
      expect.arrayContaining(['booking_id', 'date_of_arrival', 'date_of_booking', 'update_timestamp_utc']),
    );
    expect(Object.keys(rows[0])).not.toContain('Booking_ID');
    expect(new Set(rows.map((r) => r.market_segment_type))).toEqual(new Set(['Online']));
    expect(new Set(rows.map((r) => r.booking_status))).toEqual(new Set([0, 1]));
    const extra = await query(`SELECT DISTINCT market_segment_type AS s FROM read_parquet('${catalog.snapshotPath(result.extra)}')`);
    expect(extra.map((r) => r.s)).not.toContain('Online');
  });

  it('computes the booking date from arrival and lead time', async () => {
    const root = tempDir('catalog');
    const file = writeBookings(tempDir('data'), 'bookings.csv', { rows: 300 });
    const result = await ingest(root, file);
    const catalog = new LocalCatalog(root);
    const [row] = await query(
      `SELECT count(*) FILTER (WHERE date_of_booking + CAST(lead_time AS INTEGER) <> date_of_arrival) AS wrong
       FROM read_parquet('${catalog.snapshotPath(result.test)}')`,
    );
    expect(Number(row.wrong)).toBe(0);
  });

  it('applies configured value corrections', async () => {
    const root = tempDir('catalog');
    const file = writeBookings(tempDir('data'), 'segments.csv', {
      rows: 200,
      edit: (rows) => {
        for (const row of rows) if (row[column('market_segment_type')] === 'Online') row[column('market_segment_type')] = 'Online TA';
      },
    });
    const input = ingestInput(file);
    input.spec = { ...input.spec, valueCorrections: { market_segment_type: { 'Online TA': 'Online' } } };
    const result = (await quietActivityEnvironment().run(ingestBookings, root, input)) as IngestResult;
    expect(result.report.rowsTrain + result.report.rowsTest).toBeGreaterThan(100);
    const segments = await query(
      `SELECT DISTINCT market_segment_type AS s FROM read_parquet('${new LocalCatalog(root).snapshotPath(result.train)}')`,
    );
    expect(segments.map((r) => r.s)).toEqual(['Online']);
  });

  it('reuses table versions when the same file is ingested again', async () => {
    const root = tempDir('catalog');
    const file = writeBookings(tempDir('data'), 'bookings.csv');
    const first = await ingest(root, file);
    const second = await ingest(root, file);
    expect(second.reused).toBe(true);
    expect(second.train).toEqual(first.train);
    expect(versions(root)).toEqual([1, 1, 1]);
  });

  it('writes new versions when the file changes', async () => {
    const root = tempDir('catalog');
    const dir = tempDir('data');
    await ingest(root, writeBookings(dir, 'a.csv', { seed: 1 }));
    const second = await ingest(root, writeBookings(dir, 'b.csv', { seed: 2 }));
    expect(second.reused).toBe(false);
    expect(versions(root)).toEqual([2, 2, 2]);
  });

  describe('bad input', () => {
    it('lists every missing column and writes nothing', async () => {
      const root = tempDir('catalog');
      const columns = BOOKING_COLUMNS.filter(
        (c) => c !== 'lead_time' && c !== 'Booking_ID',
      );
      const file = writeBookings(tempDir('data'), 'missing.csv', { columns });
      const failure = await ingestFailure(root, file);
      expect(failure.type).toBe('InvalidInput');
      expect(failure.nonRetryable).toBe(true);
      expect(failure.message).toContain(file);
      expect(failure.message).toMatch(/missing required columns: Booking_ID, lead_time\./);
      expect(versions(root)).toEqual([0, 0, 0]);
    });

    it('names an unknown booking_status value and its line', async () => {
      const root = tempDir('catalog');
      await ingest(root, writeBookings(tempDir('data'), 'good.csv'));
      const file = writeBookings(tempDir('data'), 'status.csv', {
        edit: (rows) => {
          rows[4][column('booking_status')] = 'Maybe';
        },
      });
      const failure = await ingestFailure(root, file);
      expect(failure.type).toBe('InvalidInput');
      expect(failure.message).toContain("column booking_status: unknown values 'Maybe' (1 rows, first on line 6)");
      expect(versions(root)).toEqual([1, 1, 1]);
    });

    it('reports a missing data file', async () => {
      const failure = await ingestFailure(tempDir('catalog'), '/nonexistent/bookings.csv');
      expect(failure.type).toBe('InvalidInput');
      expect(failure.message).toMatch(/Data file not found: \/nonexistent\/bookings.csv.*--data PATH/);
    });

    it('names a non-numeric value with its column and line', async () => {
      const root = tempDir('catalog');
      const file = writeBookings(tempDir('data'), 'numbers.csv', {
        edit: (rows) => {
          rows[9][column('no_of_children')] = 'two';
        },
      });
      const failure = await ingestFailure(root, file);
      expect(failure.message).toContain('column no_of_children: 1 values are not int16 (line 11: "two")');
      expect(versions(root)).toEqual([0, 0, 0]);
    });

    it('rejects duplicate booking ids', async () => {
      const file = writeBookings(tempDir('data'), 'dupes.csv', {
        edit: (rows) => {
          rows[1][column('Booking_ID')] = rows[0][column('Booking_ID')];
        },
      });
      const failure = await ingestFailure(tempDir('catalog'), file);
      expect(failure.message).toContain('duplicate booking ids INN00001 (2 times)');
    });

    it('rejects an empty file', async () => {
      const file = path.join(tempDir('data'), 'empty.csv');
      fs.writeFileSync(file, '');
      const failure = await ingestFailure(tempDir('catalog'), file);
      expect(failure.type).toBe('InvalidInput');
      expect(failure.message).toBe(`Data file ${file} is empty. Pass a CSV file with a header row and bookings.`);
    });

    it('rejects a binary file', async () => {
      const file = path.join(tempDir('data'), 'binary.csv');
      fs.writeFileSync(file, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256)));
      const failure = await ingestFailure(tempDir('catalog'), file);
      expect(failure.type).toBe('InvalidInput');
      expect(failure.message).toContain(file);
      expect(failure.message).not.toContain('..');
    });

    it('rejects a header-only file', async () => {
      const dir = tempDir('data');
      const file = path.join(dir, 'header.csv');
      fs.writeFileSync(file, `${BOOKING_COLUMNS.join(',')}\n`);
      const failure = await ingestFailure(tempDir('catalog'), file);
      expect(failure.type).toBe('InvalidInput');
      expect(failure.message).toContain(file);
    });
  });

  const real = realDataPath();
  (real ? it : it.skip)('splits the real dataset like the reference figures', async () => {
    const root = tempDir('catalog');
    const result = await ingest(root, real!);
    expect(result.report.rowsIn).toBe(36275);
    expect(result.report.rowsExtra).toBe(13061);
    expect(result.report.rowsTrain + result.report.rowsTest).toBe(23214);
    expect(result.report.rowsTest / 23214).toBeGreaterThan(0.18);
    expect(result.report.rowsTest / 23214).toBeLessThan(0.22);
    expect(result.report.arrivalDatesNormalised).toBe(37);
    expect(result.report.duplicateRowsIgnoringId).toBe(10275);
    expect(result.report.checks).toBe('one-pass');

    // The careful path must write the same rows: no row of either side is missing from the other.
    const carefulRoot = tempDir('catalog');
    const careful = (await quietActivityEnvironment().run(ingestBookings, carefulRoot, ingestInput(real!), {
      onePass: false,
    })) as IngestResult;
    expect({ ...careful.report, checks: 'one-pass' }).toEqual(result.report);
    for (const table of ['train', 'test', 'extra'] as const) {
      const side = (catalogRoot: string, ref: IngestResult['train']) =>
        `SELECT * EXCLUDE (update_timestamp_utc) FROM read_parquet('${new LocalCatalog(catalogRoot).snapshotPath(ref)}')`;
      const [a, b] = [side(root, result[table]), side(carefulRoot, careful[table])];
      const [{ differing }] = await query(
        `SELECT (SELECT count(*) FROM (${a} EXCEPT ALL ${b})) + (SELECT count(*) FROM (${b} EXCEPT ALL ${a})) AS differing`,
      );
      expect(Number(differing)).toBe(0);
    }
  });
});
