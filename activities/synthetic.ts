import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { invalidInput } from '../common/errors';

/** Column order of the hotel-reservations CSV. */
export const BOOKING_COLUMNS = [
  'Booking_ID', 'no_of_adults', 'no_of_children', 'no_of_weekend_nights', 'no_of_week_nights', 'type_of_meal_plan',
  'required_car_parking_space', 'room_type_reserved', 'lead_time', 'arrival_year', 'arrival_month', 'arrival_date',
  'market_segment_type', 'repeated_guest', 'no_of_previous_cancellations', 'no_of_previous_bookings_not_canceled',
  'avg_price_per_room', 'no_of_special_requests', 'booking_status',
];

/** Small, fast, seedable PRNG (mulberry32): the same seed gives the same file on every platform. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Weights = [string | number, number][];

function pick(random: () => number, weights: Weights): string | number {
  const total = weights.reduce((sum, [, w]) => sum + w, 0);
  let r = random() * total;
  for (const [value, weight] of weights) {
    r -= weight;
    if (r < 0) return value;
  }
  return weights[weights.length - 1][0];
}

// Category frequencies follow the public hotel-reservations dataset (36,275 bookings).
const SEGMENTS: Weights = [['Online', 23214], ['Offline', 10528], ['Corporate', 2017], ['Complementary', 391], ['Aviation', 125]];
const MEAL_PLANS: Weights = [['Meal Plan 1', 27835], ['Not Selected', 5130], ['Meal Plan 2', 3305], ['Meal Plan 3', 5]];
const ROOM_TYPES: Weights = [
  ['Room_Type 1', 28130], ['Room_Type 4', 6057], ['Room_Type 6', 966], ['Room_Type 2', 692],
  ['Room_Type 5', 265], ['Room_Type 7', 158], ['Room_Type 3', 7],
];
const ADULTS: Weights = [[0, 139], [1, 7695], [2, 26108], [3, 2317], [4, 16]];
const CHILDREN: Weights = [[0, 33577], [1, 1618], [2, 1058], [3, 19]];

function exponential(random: () => number, mean: number): number {
  return -Math.log(1 - random()) * mean;
}

/**
 * Generates `count` bookings with the real schema and its quirks: 2018-02-29 arrivals, prices without
 * decimals and zero prices for complementary stays. The cancellation label depends on lead time,
 * special requests, price and segment, so a model has something to learn.
 */
export function generateBookings(
  count: number,
  seed = 42,
  options: { firstId?: number; idPrefix?: string } = {},
): string[][] {
  const { firstId = 1, idPrefix = 'INN' } = options;
  const random = mulberry32(seed);
  const rows: string[][] = [];
  for (let i = 0; i < count; i++) {
    const segment = String(pick(random, SEGMENTS));
    const year = random() < 0.18 ? 2017 : 2018;
    const month = year === 2017 ? 7 + Math.floor(random() * 6) : 1 + Math.floor(random() * 12);
    const leapQuirk = year === 2018 && month === 2 && random() < 0.035;
    const day = leapQuirk ? 29 : 1 + Math.floor(random() * (month === 2 ? 28 : 30));
    const leadTime = Math.min(443, Math.round(exponential(random, segment === 'Online' ? 80 : 95)));
    const repeated = random() < (segment === 'Corporate' ? 0.25 : 0.02) ? 1 : 0;
    const previousCancellations = repeated && random() < 0.2 ? 1 + Math.floor(random() * 3) : 0;
    const previousKept = repeated ? Math.floor(exponential(random, 4)) : 0;
    const specialRequests = Math.min(5, Math.floor(exponential(random, segment === 'Online' ? 0.9 : 0.3)));
    const parking = random() < 0.03 ? 1 : 0;
    const weekendNights = Math.min(7, Math.floor(exponential(random, 0.8)));
    const weekNights = Math.min(17, Math.floor(exponential(random, 2.2)));
    const room = String(pick(random, ROOM_TYPES));
    const basePrice = segment === 'Complementary' ? 0 : 60 + exponential(random, 45) + (room === 'Room_Type 6' ? 60 : 0);
    // About half of the real prices are written without decimals.
    const price = random() < 0.47 ? String(Math.round(basePrice)) : basePrice.toFixed(2);

    const score =
      -1.4 + leadTime / 90 - 0.9 * specialRequests + (segment === 'Online' ? 0.6 : -0.4) +
      (basePrice - 100) / 120 - 1.5 * repeated - 1.2 * parking + (segment === 'Complementary' ? -5 : 0);
    const canceled = random() < 1 / (1 + Math.exp(-score));

    rows.push([
      `${idPrefix}${String(firstId + i).padStart(5, '0')}`,
      String(pick(random, ADULTS)),
      String(pick(random, CHILDREN)),
      String(weekendNights),
      String(weekNights),
      String(pick(random, MEAL_PLANS)),
      String(parking),
      room,
      String(leadTime),
      String(year),
      String(month),
      String(day),
      segment,
      String(repeated),
      String(previousCancellations),
      String(previousKept),
      price,
      String(specialRequests),
      canceled ? 'Canceled' : 'Not_Canceled',
    ]);
  }
  return rows;
}

/** Writes a synthetic bookings CSV (through a temporary file, so a reader never sees half of it). */
export function writeSyntheticBookings(file: string, count: number, seed = 42, idPrefix = 'INN'): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const rows = generateBookings(count, seed, { idPrefix });
  const lines = [BOOKING_COLUMNS.join(','), ...rows.map((row) => row.join(','))];
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, `${lines.join('\n')}\n`);
  fs.renameSync(tmp, file);
  return file;
}

export interface SyntheticBatchInput {
  rows: number;
  /** Seed of the generator; without it the seed comes from the workflow id, so each run differs. */
  seed?: number;
}

/**
 * Writes a batch of new synthetic bookings for a refresh run and returns its path. Ids start with
 * `SYN` and a tag of the workflow id, so batches of different runs never collide with each other or
 * with the real `INN` ids. A retried attempt rewrites the same file.
 */
export function generateSyntheticBatch(dataDir: string, workflowId: string, input: SyntheticBatchInput): string {
  if (!Number.isInteger(input.rows) || input.rows < 1 || input.rows > 10_000_000) {
    throw invalidInput(`Invalid synthetic batch size ${input.rows}: expected an integer from 1 to 10,000,000.`);
  }
  const tag = crypto.createHash('sha256').update(workflowId).digest('hex').slice(0, 8).toUpperCase();
  const seed = input.seed ?? parseInt(tag, 16);
  const file = path.join(dataDir, `synthetic-${workflowId.replace(/[^A-Za-z0-9_.-]/g, '_')}.csv`);
  return writeSyntheticBookings(file, input.rows, seed, `SYN${tag}-`);
}
