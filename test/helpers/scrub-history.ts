// Copies a recorded workflow history into the replay fixtures with its data rows replaced, so no
// booking from the dataset lands in the repository. Replay compares commands, not payloads, so the
// scrubbed history replays the same way.
//
// Usage: npx tsx test/helpers/scrub-history.ts test-results/histories/e2e-first.json NAME.json
import fs from 'node:fs';
import path from 'node:path';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'histories');

/** One made-up booking with every model input, in place of a row from the test table. */
const PLACEHOLDER_RECORD: Record<string, number | string> = {
  no_of_adults: 2,
  no_of_children: 0,
  no_of_weekend_nights: 1,
  no_of_week_nights: 2,
  required_car_parking_space: 0,
  lead_time: 30,
  repeated_guest: 0,
  no_of_previous_cancellations: 0,
  no_of_previous_bookings_not_canceled: 0,
  avg_price_per_room: 100,
  no_of_special_requests: 1,
  arrival_year: 2018,
  arrival_month: 6,
  arrival_date: 15,
  type_of_meal_plan: 'Meal Plan 1',
  room_type_reserved: 'Room_Type 1',
};

/** Replaces every `dataframe_records` row with the placeholder, keeping the row's keys. */
function scrub(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(scrub);
  if (value === null || typeof value !== 'object') return value;
  const entries = Object.entries(value as Record<string, unknown>).map(([key, inner]) => {
    if (key === 'dataframe_records' && Array.isArray(inner)) {
      return [key, inner.map((row) => Object.fromEntries(Object.keys(row as object).map((k) => [k, PLACEHOLDER_RECORD[k] ?? 0])))];
    }
    return [key, scrub(inner)];
  });
  return Object.fromEntries(entries);
}

/** Decodes each JSON payload, scrubs it, and encodes it again; other payloads stay as they are. */
function scrubPayloads(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(scrubPayloads);
  if (node === null || typeof node !== 'object') return node;
  const object = node as Record<string, unknown>;
  const metadata = object.metadata as Record<string, string> | undefined;
  if (typeof object.data === 'string' && metadata?.encoding === Buffer.from('json/plain').toString('base64')) {
    const decoded = JSON.parse(Buffer.from(object.data, 'base64').toString('utf8'));
    return { ...object, data: Buffer.from(JSON.stringify(scrub(decoded))).toString('base64') };
  }
  return Object.fromEntries(Object.entries(object).map(([key, inner]) => [key, scrubPayloads(inner)]));
}

function main(): void {
  const [source, name] = process.argv.slice(2);
  if (!source || !name?.endsWith('.json')) {
    console.error('Usage: npx tsx test/helpers/scrub-history.ts HISTORY.json FIXTURE_NAME.json');
    process.exit(2);
  }
  const history = JSON.parse(fs.readFileSync(source, 'utf8'));
  const target = path.join(FIXTURES, name);
  fs.writeFileSync(target, JSON.stringify(scrubPayloads(history), null, 2));
  console.log(`Wrote ${target}`);
}

main();
