import type { ApplicationFailure } from '@temporalio/common';
import { updateFeatureTable, type FeatureTableInput, type FeatureTableResult } from '../../activities/features';
import { ingestBookings, openDuckDB } from '../../activities/ingestion';
import { LocalCatalog } from '../../platform/catalog/local';
import type { IngestResult } from '../../workflows/types';
import { column, quietActivityEnvironment, tempDir, testSpec, writeBookings } from '../helpers/fixtures';

const FEATURES = ['repeated_guest', 'no_of_previous_cancellations', 'no_of_previous_bookings_not_canceled'];

async function ingest(root: string, file: string): Promise<IngestResult> {
  const spec = testSpec(file);
  const input = { sourcePath: file, catalog: spec.catalog, schema: spec.schema, spec: spec.ingest };
  return quietActivityEnvironment().run(ingestBookings, root, input) as Promise<IngestResult>;
}

function featureInput(tables: IngestResult, sources = [tables.train, tables.test]): FeatureTableInput {
  return { table: { catalog: 'mlops_dev', schema: 'acikgozm', name: 'hotel_features' }, key: 'booking_id', features: FEATURES, sources };
}

async function update(root: string, input: FeatureTableInput): Promise<FeatureTableResult> {
  return quietActivityEnvironment().run(updateFeatureTable, root, input) as Promise<FeatureTableResult>;
}

async function rows(file: string): Promise<Record<string, unknown>[]> {
  const { instance, connection } = await openDuckDB();
  try {
    return (await connection.runAndReadAll(`SELECT * FROM read_parquet('${file}') ORDER BY booking_id`)).getRowObjectsJson() as Record<
      string,
      unknown
    >[];
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

describe('updateFeatureTable', () => {
  const root = tempDir('features-catalog');
  const data = tempDir('features-data');
  let first: IngestResult;
  let created: FeatureTableResult;

  beforeAll(async () => {
    first = await ingest(root, writeBookings(data, 'first.csv', { rows: 300, seed: 5 }));
    created = await update(root, featureInput(first));
  });

  it('writes one row per booking', async () => {
    const stored = await rows(new LocalCatalog(root).snapshotPath(created.table));
    expect(created.table.version).toBe(1);
    expect(stored).toHaveLength(first.report.rowsTrain + first.report.rowsTest);
    expect(Object.keys(stored[0]).sort()).toEqual(['booking_id', ...FEATURES].sort());
    expect(new Set(stored.map((row) => row.booking_id)).size).toBe(stored.length);
    expect(created.changes.inserted).toBe(stored.length);
  });

  it('reuses the version for the same source versions', async () => {
    const again = await update(root, featureInput(first));
    expect(again.reused).toBe(true);
    expect(again.table.version).toBe(1);
  });

  it('upserts changed features instead of appending rows', async () => {
    const file = writeBookings(data, 'second.csv', {
      rows: 300,
      seed: 5,
      edit: (bookings) => {
        for (const booking of bookings.slice(0, 40)) booking[column('repeated_guest')] = '1';
      },
    });
    const second = await ingest(root, file);
    const merged = await update(root, featureInput(second));
    const stored = await rows(new LocalCatalog(root).snapshotPath(merged.table));
    expect(merged.table.version).toBe(2);
    expect(stored).toHaveLength(second.report.rowsTrain + second.report.rowsTest);
    expect(merged.changes.inserted).toBe(0);
    expect(merged.changes.updated).toBeGreaterThan(0);
    expect(merged.changes.updated).toBeLessThanOrEqual(40);
    const feed = await rows(new LocalCatalog(root).changesPath(merged.table));
    expect(feed.every((row) => row._change_type === 'update_postimage' && row.repeated_guest === 1)).toBe(true);
  });

  it('rejects a key that repeats across the source tables', async () => {
    const failure = await update(root, featureInput(first, [first.train, first.train])).catch((error: ApplicationFailure) => error);
    expect((failure as ApplicationFailure).type).toBe('InvalidInput');
    expect((failure as ApplicationFailure).message).toMatch(/primary key booking_id repeats across/);
  });
});
