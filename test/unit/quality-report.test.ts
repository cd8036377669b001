import { formatQualityReport } from '../../client/quality-report';
import type { QualityReport } from '../../workflows/types';

const REPORT: QualityReport = {
  sourceFile: '/data/hotel_reservations.csv',
  sourceSha256: 'abcdef0123456789'.repeat(4),
  rowsIn: 36275,
  rowsTrain: 18631,
  rowsTest: 4583,
  rowsExtra: 13061,
  arrivalDatesNormalised: 37,
  canceledShareTrain: 0.3312,
  valuesTrimmed: 0,
  duplicateRowsIgnoringId: 10275,
  rowsQuarantined: 0,
  checks: 'one-pass',
};

describe('formatQualityReport', () => {
  const text = formatQualityReport(REPORT);

  it('prints every figure of the report', () => {
    expect(text).toMatch(/rows in\s+36,275/);
    expect(text).toMatch(/rows to train \/ test \/ extra\s+18,631 \/ 4,583 \/ 13,061/);
    expect(text).toMatch(/arrival dates rolled forward\s+37/);
    expect(text).toMatch(/rows duplicated apart from the id\s+10,275/);
    expect(text).toMatch(/rows quarantined\s+0/);
    expect(text).toMatch(/values trimmed\s+0/);
    expect(text).toMatch(/canceled share in train\s+33\.1 %/);
    expect(text).toMatch(/checks\s+one pass, typed read/);
    expect(text).toContain('/data/hotel_reservations.csv (sha256 abcdef012345)');
  });

  it('aligns the values in one column', () => {
    // Two spaces of indent, the longest label, two spaces of gap.
    const valueStart = 2 + 'rows duplicated apart from the id'.length + 2;
    const lines = text.split('\n');
    expect(lines).toHaveLength(9);
    for (const line of lines) {
      expect(line[valueStart - 1]).toBe(' ');
      expect(line[valueStart]).not.toBe(' ');
    }
  });
});
