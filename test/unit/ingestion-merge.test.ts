import { ingestBookings } from '../../activities/ingestion';
import { BOOKING_COLUMNS, generateBookings } from '../../activities/synthetic';
import { LocalCatalog } from '../../platform/catalog/local';
import type { IngestResult, TableRef } from '../../workflows/types';
import { column, quietActivityEnvironment, tempDir, testSpec, queryRows } from '../helpers/fixtures';
import fs from 'node:fs';
import path from 'node:path';

// New files are merged into the tables by booking id: new bookings are inserted, changed ones updated,
// and a booking whose segment changed moves from train/test to extra_set.

function writeRows(dir: string, name: string, rows: string[][]): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, [BOOKING_COLUMNS.join(','), ...rows.map((r) => r.join(','))].join('\n') + '\n');
  return file;
}

async function ingest(root: string, file: string): Promise<IngestResult> {
  const spec = testSpec(file);
  const input = { sourcePath: file, catalog: spec.catalog, schema: spec.schema, spec: spec.ingest };
  return quietActivityEnvironment().run(ingestBookings, root, input) as Promise<IngestResult>;
}

const query = queryRows;

const read = (file: string) => query(`SELECT * FROM read_parquet('${file}')`);

describe('ingestion merge by booking id', () => {
  const original = generateBookings(300, 11);
  const online = original.filter((r) => r[column('market_segment_type')] === 'Online');
  const changed = online.slice(0, 10).map((r) => {
    const copy = [...r];
    copy[column('lead_time')] = String(Number(copy[column('lead_time')]) + 7);
    return copy;
  });
  const moved = online.slice(10, 15).map((r) => {
    const copy = [...r];
    copy[column('market_segment_type')] = 'Offline';
    return copy;
  });
  const fresh = generateBookings(50, 12, { firstId: 90001 });
  const unchanged = online.slice(15, 20);

  let root: string;
  let first: IngestResult;
  let second: IngestResult;
  let catalog: LocalCatalog;

  beforeAll(async () => {
    root = tempDir('merge-catalog');
    const dir = tempDir('merge-data');
    catalog = new LocalCatalog(root);
    first = await ingest(root, writeRows(dir, 'first.csv', original));
    second = await ingest(root, writeRows(dir, 'second.csv', [...changed, ...moved, ...fresh, ...unchanged]));
  });

  const rowsOf = async (ref: TableRef) => read(catalog.snapshotPath(ref));

  it('keeps every booking exactly once', async () => {
    const all = [
      ...(await rowsOf(second.train)),
      ...(await rowsOf(second.test)),
      ...(await rowsOf(second.extra)),
    ].map((r) => r.booking_id);
    expect(all).toHaveLength(350);
    expect(new Set(all).size).toBe(350);
  });

  it('counts inserted, updated and deleted rows', () => {
    const total = (kind: 'inserted' | 'updated' | 'deleted') =>
      second.changes.train[kind] + second.changes.test[kind] + second.changes.extra[kind];
    expect(total('inserted')).toBe(50 + 5);
    expect(total('updated')).toBe(10);
    expect(total('deleted')).toBe(5);
    expect(second.changes.extra.inserted).toBeGreaterThanOrEqual(5);
  });

  it('stores the updated values', async () => {
    const rows = [...(await rowsOf(second.train)), ...(await rowsOf(second.test))];
    const row = rows.find((r) => r.booking_id === changed[0][0])!;
    expect(row.lead_time).toBe(Number(changed[0][column('lead_time')]));
  });

  it('moves a booking whose segment changed to extra_set', async () => {
    const extraIds = (await rowsOf(second.extra)).map((r) => r.booking_id);
    const onlineIds = [...(await rowsOf(second.train)), ...(await rowsOf(second.test))].map((r) => r.booking_id);
    for (const row of moved) {
      expect(extraIds).toContain(row[0]);
      expect(onlineIds).not.toContain(row[0]);
    }
  });

  it('keeps the stored row of an unchanged booking', async () => {
    const before = [...(await rowsOf(first.train)), ...(await rowsOf(first.test))].find((r) => r.booking_id === unchanged[0][0]);
    const after = [...(await rowsOf(second.train)), ...(await rowsOf(second.test))].find((r) => r.booking_id === unchanged[0][0]);
    expect(after).toEqual(before);
  });

  it('writes a change feed per version', async () => {
    const feed = await read(catalog.changesPath(second.train));
    const types = new Set(feed.map((r) => r._change_type));
    expect([...types].every((t) => ['insert', 'update_postimage', 'delete'].includes(String(t)))).toBe(true);
    const history = catalog.history(second.train);
    expect(history[history.length - 1].operation).toBe('MERGE');
    expect(history[history.length - 1].changes).toEqual(second.changes.train);
    expect(feed).toHaveLength(second.changes.train.inserted + second.changes.train.updated + second.changes.train.deleted);
  });

  it('reads the change feed of a first version from its snapshot', async () => {
    expect(fs.existsSync(catalog.changesPath(first.train))).toBe(false);
    const feed = await query(`SELECT _change_type, count(*)::INTEGER AS n FROM ${catalog.changeFeedSql(first.train)} GROUP BY 1`);
    expect(feed).toEqual([{ _change_type: 'insert', n: first.report.rowsTrain }]);
    const merged = await query(`SELECT count(*)::INTEGER AS n FROM ${catalog.changeFeedSql(second.train)}`);
    const { inserted, updated, deleted } = second.changes.train;
    expect(merged).toEqual([{ n: inserted + updated + deleted }]);
  });

  it('writes no version for a file without changes', async () => {
    const dir = tempDir('merge-data');
    const again = await ingest(root, writeRows(dir, 'same-rows.csv', unchanged));
    expect(again.train).toEqual(second.train);
    expect(again.changes.train).toEqual({ inserted: 0, updated: 0, deleted: 0 });
  });
});
