import fs from 'node:fs';
import path from 'node:path';
import type { ApplicationFailure } from '@temporalio/common';
import { ingestBookings, openDuckDB } from '../../activities/ingestion';
import { BOOKING_COLUMNS, generateBookings } from '../../activities/synthetic';
import { LocalCatalog } from '../../platform/catalog/local';
import type { IngestResult } from '../../workflows/types';
import { column, quietActivityEnvironment, tempDir, testSpec } from '../helpers/fixtures';

function writeRows(rows: string[][]): string {
  const file = path.join(tempDir('quarantine-data'), 'bookings.csv');
  fs.writeFileSync(file, [BOOKING_COLUMNS.join(','), ...rows.map((r) => r.join(','))].join('\n') + '\n');
  return file;
}

function run(root: string, file: string): Promise<IngestResult> {
  const spec = testSpec(file);
  const input = {
    sourcePath: file,
    catalog: spec.catalog,
    schema: spec.schema,
    spec: { ...spec.ingest, onInvalidRows: 'quarantine' as const },
  };
  return quietActivityEnvironment().run(ingestBookings, root, input) as Promise<IngestResult>;
}

describe('quarantine mode', () => {
  const rows = generateBookings(100, 21);
  rows[3][column('booking_status')] = 'Maybe';
  rows[10][column('lead_time')] = 'soon';
  rows[20][column('lead_time')] = '-4';
  rows[30][column('room_type_reserved')] = '';
  rows[41][0] = rows[40][0];

  it('moves invalid rows with their reasons and ingests the rest', async () => {
    const root = tempDir('quarantine-catalog');
    const result = await run(root, writeRows(rows));
    expect(result.report.rowsQuarantined).toBe(5);
    expect(result.report.rowsTrain + result.report.rowsTest + result.report.rowsExtra).toBe(95);
    expect(result.quarantine?.version).toBe(1);

    const { instance, connection } = await openDuckDB();
    try {
      const file = new LocalCatalog(root).snapshotPath(result.quarantine!);
      const stored = (await connection.runAndReadAll(`SELECT _line, _reasons, _source_file FROM read_parquet('${file}') ORDER BY _line`))
        .getRowObjectsJson() as { _line: number; _reasons: string; _source_file: string }[];
      expect(stored.map((r) => r._line)).toEqual([5, 12, 22, 32, 43]);
      expect(stored[0]._reasons).toBe('booking_status: unknown value Maybe');
      expect(stored[1]._reasons).toBe('lead_time: not int16: soon');
      expect(stored[2]._reasons).toBe('lead_time: out of range: -4');
      expect(stored[3]._reasons).toBe('room_type_reserved: empty');
      expect(stored[4]._reasons).toBe('Booking_ID: duplicate of an earlier row');
      expect(stored[0]._source_file).toMatch(/bookings\.csv$/);
    } finally {
      connection.closeSync();
      instance.closeSync();
    }
  });

  it('fails without writing when every row is invalid', async () => {
    const root = tempDir('quarantine-catalog');
    const bad = generateBookings(5, 22).map((r) => {
      r[column('booking_status')] = 'Unknown';
      return r;
    });
    const file = writeRows(bad);
    const failure = (await run(root, file).catch((e: ApplicationFailure) => e)) as ApplicationFailure;
    expect(failure.type).toBe('InvalidInput');
    expect(failure.message).toContain(`${file}: all 5 rows are invalid (line 2: booking_status: unknown value Unknown)`);
    expect(fs.existsSync(path.join(root, 'mlops_dev'))).toBe(false);
  });
});
