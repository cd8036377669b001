import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ingestBookings, openDuckDB, type IngestOptions } from '../../activities/ingestion';
import { quoteLiteral } from '../../activities/ingestion-sql';
import { PYTHON_BIN, REPO_ROOT } from '../../common/paths';
import { LocalCatalog } from '../../platform/catalog/local';
import type { IngestResult } from '../../workflows/types';
import { quietActivityEnvironment, realDataPath, tempDir, testSpec, writeBookings } from '../helpers/fixtures';

// bench/pandas_ingest.py implements the same steps independently in pandas, building each arrival date
// row by row as the original project did. Both paths of ingestBookings must write exactly its rows.

const TABLES = ['train', 'test', 'extra'] as const;

function pandasIngest(file: string, outDir: string): Record<string, number> {
  const script = path.join(REPO_ROOT, 'bench', 'pandas_ingest.py');
  const run = spawnSync(PYTHON_BIN, [script, file, outDir, '--dates', 'rowwise'], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`pandas_ingest.py failed with exit code ${run.status}: ${run.stderr}`);
  return JSON.parse(run.stdout.trim().split('\n').pop()!) as Record<string, number>;
}

/** Counts rows that are in one file and not in the other, comparing every column but the write time. */
async function differingRows(left: string, right: string): Promise<number> {
  const select = (file: string) => `SELECT * EXCLUDE (update_timestamp_utc) FROM read_parquet(${quoteLiteral(file)})`;
  const { instance, connection } = await openDuckDB();
  try {
    let differing = 0;
    for (const [a, b] of [
      [left, right],
      [right, left],
    ]) {
      const reader = await connection.runAndReadAll(`SELECT count(*)::INTEGER AS n FROM (${select(a)} EXCEPT ALL ${select(b)})`);
      differing += Number(reader.getRowObjectsJS()[0].n);
    }
    return differing;
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

async function expectSameAsPandas(file: string): Promise<void> {
  const pandasDir = tempDir('parity-pandas');
  const pandas = pandasIngest(file, pandasDir);
  for (const options of [{}, { onePass: false }] as IngestOptions[]) {
    const root = tempDir('parity-catalog');
    const spec = testSpec(file);
    const input = { sourcePath: file, catalog: spec.catalog, schema: spec.schema, spec: spec.ingest };
    const result = (await quietActivityEnvironment().run(ingestBookings, root, input, options)) as IngestResult;

    expect(result.report.checks).toBe(options.onePass === false ? 'careful' : 'one-pass');
    expect([result.report.rowsTrain, result.report.rowsTest, result.report.rowsExtra]).toEqual([
      pandas.train,
      pandas.test,
      pandas.extra,
    ]);
    expect(result.report.arrivalDatesNormalised).toBe(pandas.normalised);
    expect(result.report.duplicateRowsIgnoringId).toBe(pandas.duplicatesIgnoringId);
    for (const table of TABLES) {
      const ours = new LocalCatalog(root).snapshotPath(result[table]);
      expect(await differingRows(ours, path.join(pandasDir, `${table}.parquet`))).toBe(0);
    }
  }
}

describe('ingestion parity with the pandas implementation', () => {
  it('matches pandas on leap-day synthetic data', async () => {
    const file = writeBookings(tempDir('parity-data'), 'bookings.csv', { rows: 3000, seed: 21 });
    expect(fs.readFileSync(file, 'utf8')).toContain(',2018,2,29,');
    await expectSameAsPandas(file);
  });

  const real = realDataPath();
  (real ? it : it.skip)('writes the same rows for the real dataset', async () => {
    await expectSameAsPandas(real!);
  });
});
