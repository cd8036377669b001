// Writes a scaled-up copy of a bookings CSV: every row repeated COPIES times, each with a fresh
// unique booking id, so ingestion can be measured on more rows than the real file has.
// Usage: npx tsx bench/make-scaled-bookings.ts SOURCE_CSV COPIES OUTPUT_CSV
import fs from 'node:fs';
import { once } from 'node:events';

/** Raw CSV column whose values are replaced; the ingestion rejects duplicate values in it. */
const ID_COLUMN = 'Booking_ID';

/**
 * Writes `copies` copies of the rows of `source` to `output` and returns the number of rows written.
 * The ids become `INN` plus a running number, zero-padded to one width, so they stay unique and sort
 * in file order. The source (36,275 rows, 3 MB for the real file) is held in memory, and the output
 * is streamed one copy at a time.
 */
export async function writeScaledBookings(source: string, copies: number, output: string): Promise<number> {
  if (!Number.isInteger(copies) || copies < 1) {
    throw new Error(`Invalid copy count ${copies}: pass a whole number of 1 or more.`);
  }
  const text = fs.readFileSync(source, 'utf8');
  // Quoted fields could contain commas, and the plain split below would then cut them apart.
  if (text.includes('"')) {
    throw new Error(`Source ${source} contains quoted fields, which this script does not parse. Pass an unquoted CSV.`);
  }
  const lines = text.split(/\r?\n/).filter((line) => line.length > 0);
  const header = lines[0];
  const rows = lines.slice(1).map((line) => line.split(','));
  const idIndex = header.split(',').indexOf(ID_COLUMN);
  if (idIndex < 0) throw new Error(`Source ${source} has no ${ID_COLUMN} column in its header: ${header}`);
  if (rows.length === 0) throw new Error(`Source ${source} has a header but no rows.`);

  const total = rows.length * copies;
  const width = Math.max(5, String(total).length);
  const out = fs.createWriteStream(output);
  const finished = once(out, 'finish');
  out.write(`${header}\n`);

  let running = 0;
  for (let copy = 0; copy < copies; copy += 1) {
    const chunk: string[] = [];
    for (const fields of rows) {
      running += 1;
      const renumbered = fields.slice();
      renumbered[idIndex] = `INN${String(running).padStart(width, '0')}`;
      chunk.push(renumbered.join(','));
    }
    // Wait for the stream to drain, so that at most one copy (about 3.5 MB) is buffered at a time.
    if (!out.write(`${chunk.join('\n')}\n`)) await once(out, 'drain');
  }
  out.end();
  await finished;
  return total;
}

async function main(): Promise<void> {
  const [source, copies, output] = process.argv.slice(2);
  if (!source || !copies || !output) {
    console.error('Usage: npx tsx bench/make-scaled-bookings.ts SOURCE_CSV COPIES OUTPUT_CSV');
    process.exit(2);
  }
  const rows = await writeScaledBookings(source, Number(copies), output);
  console.log(`Wrote ${rows} rows to ${output}`);
}

if (require.main === module) {
  main().catch((error: Error) => {
    console.error(error.message);
    process.exit(1);
  });
}
