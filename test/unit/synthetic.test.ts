import fs from 'node:fs';
import type { ApplicationFailure } from '@temporalio/common';
import { BOOKING_COLUMNS, generateBookings, generateSyntheticBatch } from '../../activities/synthetic';
import { column, tempDir } from '../helpers/fixtures';

describe('synthetic bookings', () => {
  it('repeats the same rows for the same seed', () => {
    expect(generateBookings(50, 5)).toEqual(generateBookings(50, 5));
    expect(generateBookings(50, 5)).not.toEqual(generateBookings(50, 6));
  });

  it('has the real schema, segments and quirks', () => {
    const rows = generateBookings(20_000, 42);
    expect(rows[0]).toHaveLength(BOOKING_COLUMNS.length);
    const share = (predicate: (row: string[]) => boolean) => rows.filter(predicate).length / rows.length;
    const online = share((r) => r[column('market_segment_type')] === 'Online');
    expect(online).toBeGreaterThan(0.58);
    expect(online).toBeLessThan(0.70);
    const canceled = share((r) => r[column('booking_status')] === 'Canceled');
    expect(canceled).toBeGreaterThan(0.2);
    expect(canceled).toBeLessThan(0.5);
    expect(rows.some((r) => r[column('arrival_month')] === '2' && r[column('arrival_date')] === '29' && r[column('arrival_year')] === '2018')).toBe(true);
    expect(rows.some((r) => !r[column('avg_price_per_room')].includes('.'))).toBe(true);
  });

  it('writes refresh batches with run-specific ids', () => {
    const dir = tempDir('synthetic');
    const first = fs.readFileSync(generateSyntheticBatch(dir, 'refresh-1', { rows: 10 }), 'utf8').split('\n');
    const again = fs.readFileSync(generateSyntheticBatch(dir, 'refresh-1', { rows: 10 }), 'utf8').split('\n');
    const other = fs.readFileSync(generateSyntheticBatch(dir, 'refresh-2', { rows: 10 }), 'utf8').split('\n');
    expect(first[0]).toBe(BOOKING_COLUMNS.join(','));
    expect(first).toEqual(again);
    expect(first[1].split(',')[0]).toMatch(/^SYN[0-9A-F]{8}-00001$/);
    expect(first[1].split(',')[0]).not.toBe(other[1].split(',')[0]);
  });

  it('rejects an invalid batch size', () => {
    let failure: ApplicationFailure | undefined;
    try {
      generateSyntheticBatch(tempDir('synthetic'), 'refresh-3', { rows: 0 });
    } catch (error) {
      failure = error as ApplicationFailure;
    }
    expect(failure?.type).toBe('InvalidInput');
    expect(failure?.message).toContain('Invalid synthetic batch size 0');
  });
});
