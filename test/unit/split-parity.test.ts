import { openDuckDB } from '../../activities/ingestion';
import { isTestSql } from '../../activities/ingestion-sql';

// The Python train job splits the other segments' rows with its own copy of the ingestion's rule
// (hotel_mlops.data.is_test_id). Both must pick these ids for the test side; ml/tests checks the same list.
const TEST_SIDE = ['INN00002', 'INN00022', 'INN00027', 'INN00031', 'INN00032', 'INN00035', 'INN00037', 'INN00042', 'INN00043', 'INN00046', 'INN00056', 'INN00057'];

describe('test split rule', () => {
  it('puts the same ids on the test side as the Python rule', async () => {
    const { instance, connection } = await openDuckDB();
    try {
      const ids = Array.from({ length: 60 }, (_, index) => `'INN${String(index + 1).padStart(5, '0')}'`);
      const reader = await connection.runAndReadAll(
        `SELECT id FROM (SELECT unnest([${ids.join(', ')}]) AS id) WHERE ${isTestSql('id', 0.2)} ORDER BY id`,
      );
      expect(reader.getRowObjectsJS().map((row) => row.id)).toEqual(TEST_SIDE);
    } finally {
      connection.closeSync();
      instance.closeSync();
    }
  });
});
