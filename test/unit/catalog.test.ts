import fs from 'node:fs';
import path from 'node:path';
import { LocalCatalog } from '../../platform/catalog/local';
import { tempDir } from '../helpers/fixtures';

const table = { catalog: 'mlops_dev', schema: 'acikgozm', name: 'train_set' };

function stage(catalog: LocalCatalog, content: string): string {
  const file = catalog.stagingPath(table, 'test');
  fs.writeFileSync(file, content);
  return file;
}

describe('LocalCatalog', () => {
  it('numbers versions and records their history', async () => {
    const catalog = new LocalCatalog(tempDir('catalog'));
    const first = await catalog.commit(table, stage(catalog, 'a'), { rowCount: 1, sourceHash: 'h1' });
    const second = await catalog.commit(table, stage(catalog, 'b'), { rowCount: 2, sourceHash: 'h2' });
    expect([first.version, second.version]).toEqual([1, 2]);
    expect(fs.readFileSync(catalog.snapshotPath(second), 'utf8')).toBe('b');
    const history = catalog.history(table);
    expect(history.map((h) => [h.version, h.operation, h.rowCount, h.sourceHash])).toEqual([
      [1, 'WRITE', 1, 'h1'],
      [2, 'WRITE', 2, 'h2'],
    ]);
    expect(Date.parse(history[1].timestamp)).not.toBeNaN();
  });

  it('keeps one version for concurrent commits of one source', async () => {
    const catalog = new LocalCatalog(tempDir('catalog'));
    const staged = [stage(catalog, 'a'), stage(catalog, 'a2')];
    const refs = await Promise.all(staged.map((file) => catalog.commit(table, file, { rowCount: 1, sourceHash: 'same' })));
    expect(refs.map((r) => r.version)).toEqual([1, 1]);
    expect(catalog.history(table)).toHaveLength(1);
    expect(staged.filter((file) => fs.existsSync(file))).toEqual([]);
  });

  it('removes a stale lock left by a crashed writer', async () => {
    const catalog = new LocalCatalog(tempDir('catalog'));
    const lock = path.join(catalog.tableDir(table), '.lock');
    fs.mkdirSync(lock, { recursive: true });
    const old = new Date(Date.now() - 11 * 60 * 1000);
    fs.utimesSync(lock, old, old);
    const ref = await catalog.commit(table, stage(catalog, 'a'), { rowCount: 1, sourceHash: 'h' });
    expect(ref.version).toBe(1);
    expect(fs.existsSync(lock)).toBe(false);
  });
});
