// Measures ingestion throughput and peak memory of ingestBookings (DuckDB) against a pandas baseline
// (bench/pandas_ingest.py), on the real bookings file and on a scaled-up copy of it. It prints a
// Markdown table with medians and ratios, and whether all implementations produce the same tables.
//
// Usage: HOTEL_DATA_CSV=/path/to/hotel_reservations.csv npx tsx bench/ingest-throughput.ts
//          [--copies 100] [--runs 3] [--rowwise-max-rows N] [--keep]
// PYTHON overrides the Python interpreter (default ml/.venv/bin/python, which has pandas and pyarrow).
//
// Each implementation runs as its own process under `/usr/bin/time -v`, whose "Maximum resident set
// size" is the peak RSS of that process, native allocations (DuckDB, numpy, Arrow) included. Without
// /usr/bin/time, the peak RSS printed by the process itself is used. Temp data goes to
// /tmp/bench-ingest-*, which is removed at the end unless --keep is given.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { openDuckDB } from '../activities/ingestion';
import { quoteLiteral } from '../activities/ingestion-sql';
import { PYTHON_BIN, REPO_ROOT } from '../common/paths';
import { LocalCatalog } from '../platform/catalog/local';
import { testSpec } from '../test/helpers/fixtures';
import { writeScaledBookings } from './make-scaled-bookings';

const TIME_BIN = '/usr/bin/time';
const TABLES = ['train', 'test', 'extra'] as const;
type Table = (typeof TABLES)[number];

/** Targets at the largest size. */
const TARGET_SPEEDUP = 10;
const TARGET_RSS_SHARE = 1 / 3;

interface Implementation {
  /** Short label for the table's command column. */
  label: string;
  /** Builds the command line that ingests `csv` into the fresh folder `outDir`. */
  command: (csv: string, outDir: string) => string[];
  /** Returns the Parquet file of one output table under `outDir`. */
  tableFile: (outDir: string, table: Table) => string;
  isBaseline: boolean;
  isRowwise: boolean;
}

/** One JSON line as printed by bench/ingest-once.ts and bench/pandas_ingest.py. */
interface RunOutput {
  rowsIn: number;
  train: number;
  test: number;
  extra: number;
  normalised: number;
  trimmed: number;
  duplicatesIgnoringId: number;
  seconds: number;
  maxRssKiB: number;
}

interface Measurement extends RunOutput {
  wallSeconds: number;
  peakRssKiB: number;
}

interface Size {
  label: string;
  csv: string;
  rows: number;
}

interface Row {
  size: Size;
  implementation: Implementation;
  wallSeconds: number;
  inProcessSeconds: number;
  peakRssMiB: number;
  rowsPerSecond: number;
}

function implementations(python: string): Implementation[] {
  const spec = testSpec('unused.csv');
  const catalogTable = (outDir: string, table: Table): string =>
    new LocalCatalog(outDir).snapshotPath({
      catalog: spec.catalog,
      schema: spec.schema,
      name: spec.ingest.tables[table],
      version: 1,
    });
  const pandasTable = (outDir: string, table: Table): string => path.join(outDir, `${table}.parquet`);
  const pandasScript = path.join(REPO_ROOT, 'bench', 'pandas_ingest.py');
  return [
    {
      label: 'ours: `node --import tsx bench/ingest-once.ts`',
      command: (csv, outDir) => [process.execPath, '--import', 'tsx', path.join(REPO_ROOT, 'bench', 'ingest-once.ts'), csv, outDir],
      tableFile: catalogTable,
      isBaseline: false,
      isRowwise: false,
    },
    {
      label: 'pandas: `python bench/pandas_ingest.py`',
      command: (csv, outDir) => [python, pandasScript, csv, outDir],
      tableFile: pandasTable,
      isBaseline: true,
      isRowwise: false,
    },
    {
      label: 'pandas row-wise dates: `python bench/pandas_ingest.py --dates rowwise`',
      command: (csv, outDir) => [python, pandasScript, csv, outDir, '--dates', 'rowwise'],
      tableFile: pandasTable,
      isBaseline: false,
      isRowwise: true,
    },
  ];
}

/** Runs one command as a child process and returns its output, wall time and peak RSS. */
function measure(argv: string[], useTime: boolean): Measurement {
  const [command, ...args] = useTime ? [TIME_BIN, '-v', ...argv] : argv;
  const start = process.hrtime.bigint();
  const child = spawnSync(command, args, { cwd: REPO_ROOT, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  const wallSeconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (child.error) throw new Error(`Failed to start ${argv.join(' ')}: ${child.error.message}`);
  if (child.status !== 0) {
    throw new Error(`Command failed with exit code ${child.status}: ${argv.join(' ')}\n${child.stderr.trim()}`);
  }

  const lastLine = child.stdout.trim().split('\n').pop() ?? '';
  let output: RunOutput;
  try {
    output = JSON.parse(lastLine) as RunOutput;
  } catch {
    throw new Error(`Expected a JSON line from ${argv.join(' ')}, got: ${child.stdout.trim().slice(-500)}`);
  }
  // GNU time reports the peak RSS in KiB under the label "kbytes".
  const timeRss = /Maximum resident set size \(kbytes\): (\d+)/.exec(child.stderr);
  if (useTime && !timeRss) throw new Error(`No peak RSS in the output of ${TIME_BIN} -v: ${child.stderr.trim().slice(-500)}`);
  const peakRssKiB = timeRss ? Number(timeRss[1]) : output.maxRssKiB;
  return { ...output, wallSeconds, peakRssKiB };
}

/** Returns the checked-out commit and whether the product code differs from it, for the record. */
function describeCommit(): string {
  const git = (args: string[]): string => spawnSync('git', args, { cwd: REPO_ROOT, encoding: 'utf8' }).stdout?.trim() ?? '';
  const commit = git(['rev-parse', '--short', 'HEAD']) || 'unknown commit';
  const changed = git(['status', '--porcelain', '--', 'activities', 'platform', 'config', 'workflows']);
  return changed ? `${commit} with uncommitted changes in ${changed.split('\n').length} files` : commit;
}

/** Returns the 1-, 5- and 15-minute load averages, which show whether other work shared the CPUs. */
function formatLoad(): string {
  return os
    .loadavg()
    .map((load) => load.toFixed(2))
    .join(', ');
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/**
 * Counts rows that are in one table and not in the other, compared on every column but the ingestion
 * timestamp. Columns compare by position, so a different column order or type counts as a difference.
 */
async function countDifferingRows(left: string, right: string): Promise<number> {
  const select = (file: string): string => `SELECT * EXCLUDE (update_timestamp_utc) FROM read_parquet(${quoteLiteral(file)})`;
  const { instance, connection } = await openDuckDB();
  try {
    let differing = 0;
    for (const [a, b] of [[left, right], [right, left]]) {
      const sql = `SELECT count(*)::BIGINT AS n FROM (${select(a)} EXCEPT ALL ${select(b)})`;
      const result = (await connection.runAndReadAll(sql)).getRowObjectsJS() as { n: bigint }[];
      differing += Number(result[0].n);
    }
    return differing;
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

function countsLine(output: RunOutput): string {
  return (
    `in ${output.rowsIn}, train ${output.train}, test ${output.test}, extra ${output.extra}, ` +
    `normalised dates ${output.normalised}, trimmed values ${output.trimmed}, ` +
    `rows duplicated apart from the id ${output.duplicatesIgnoringId}`
  );
}

function formatNumber(value: number, digits = 0): string {
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Speed and memory of `row` relative to `base`, as "rows/s ×, in-process ×, peak RSS ×". */
function ratios(row: Row, base: Row | undefined): string[] {
  if (!base) return ['n/a', 'n/a', 'n/a'];
  const ratio = (value: number): string => `${value.toFixed(2)}×`;
  return [
    ratio(row.rowsPerSecond / base.rowsPerSecond),
    ratio(base.inProcessSeconds / row.inProcessSeconds),
    ratio(row.peakRssMiB / base.peakRssMiB),
  ];
}

function printTable(rows: Row[]): void {
  console.log(
    '| rows | command | wall s (median) | rows/s | in-process s | peak RSS MiB | ' +
      'vs pandas: rows/s, in-process speed, peak RSS | vs pandas row-wise: rows/s, in-process speed, peak RSS |',
  );
  console.log('| ---: | --- | ---: | ---: | ---: | ---: | --- | --- |');
  for (const row of rows) {
    const baseline = rows.find((r) => r.size === row.size && r.implementation.isBaseline);
    const rowwise = rows.find((r) => r.size === row.size && r.implementation.isRowwise);
    console.log(
      `| ${formatNumber(row.size.rows)} | ${row.implementation.label} | ${row.wallSeconds.toFixed(2)} | ` +
        `${formatNumber(row.rowsPerSecond)} | ${row.inProcessSeconds.toFixed(2)} | ${formatNumber(row.peakRssMiB)} | ` +
        `${ratios(row, baseline).join(', ')} | ${ratios(row, rowwise).join(', ')} |`,
    );
  }
}

/**
 * Prints whether the largest size meets the speed and memory targets, against the pandas script with
 * the original project's row-wise dates and against the faster vectorised one.
 */
function reportTargets(rows: Row[], largest: Size): void {
  const ours = rows.find((r) => r.size === largest && !r.implementation.isBaseline && !r.implementation.isRowwise);
  if (!ours) throw new Error(`Missing results for ${largest.label}.`);
  const baselines = [
    ['pandas with row-wise dates, as the original project', rows.find((r) => r.size === largest && r.implementation.isRowwise)],
    ['vectorised pandas', rows.find((r) => r.size === largest && r.implementation.isBaseline)],
  ] as const;
  for (const [name, baseline] of baselines) {
    if (!baseline) continue;
    const speedup = ours.rowsPerSecond / baseline.rowsPerSecond;
    const inProcess = baseline.inProcessSeconds / ours.inProcessSeconds;
    const rssShare = ours.peakRssMiB / baseline.peakRssMiB;
    const verdict = (met: boolean): string => (met ? 'met' : 'NOT met');
    console.log(`\nTargets at ${formatNumber(largest.rows)} rows, against ${name}:`);
    console.log(
      `- rows/s at least ${TARGET_SPEEDUP}×: ${speedup.toFixed(2)}× (in-process ${inProcess.toFixed(2)}×), ` +
        verdict(speedup >= TARGET_SPEEDUP),
    );
    console.log(
      `- peak RSS at most ${TARGET_RSS_SHARE.toFixed(2)}: ${rssShare.toFixed(2)}, ${verdict(rssShare <= TARGET_RSS_SHARE)}`,
    );
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      copies: { type: 'string', default: '100' },
      runs: { type: 'string', default: '3' },
      'rowwise-max-rows': { type: 'string' },
      keep: { type: 'boolean', default: false },
    },
  });
  const copies = Number(values.copies);
  const runs = Number(values.runs);
  const rowwiseMaxRows = values['rowwise-max-rows'] === undefined ? Infinity : Number(values['rowwise-max-rows']);
  if (!Number.isInteger(copies) || copies < 1) throw new Error(`Invalid --copies ${values.copies}: pass a whole number of 1 or more.`);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`Invalid --runs ${values.runs}: pass a whole number of 1 or more.`);
  if (Number.isNaN(rowwiseMaxRows)) throw new Error(`Invalid --rowwise-max-rows ${values['rowwise-max-rows']}: pass a row count.`);

  const source = process.env.HOTEL_DATA_CSV;
  if (!source || !fs.existsSync(source)) {
    throw new Error(`HOTEL_DATA_CSV is ${source === undefined ? 'not set' : `${source}, which does not exist`}. Set it to the bookings CSV.`);
  }
  const python = process.env.PYTHON ?? PYTHON_BIN;
  if (!fs.existsSync(python)) throw new Error(`Python not found at ${python}. Run uv sync in ml/ or set PYTHON.`);
  const useTime = fs.existsSync(TIME_BIN);
  if (!useTime) console.log(`NOTE: ${TIME_BIN} not found; peak RSS is the value each process reports for itself.`);

  console.log(`Product code: ${describeCommit()}. Load average before: ${formatLoad()}.`);
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-ingest-'));
  try {
    const sourceRows = fs.readFileSync(source, 'utf8').split('\n').filter((line) => line.length > 0).length - 1;
    const scaledCsv = path.join(workDir, `bookings-x${copies}.csv`);
    const scaleStart = process.hrtime.bigint();
    const scaledRows = await writeScaledBookings(source, copies, scaledCsv);
    const scaleSeconds = Number(process.hrtime.bigint() - scaleStart) / 1e9;
    console.log(`Wrote ${formatNumber(scaledRows)} rows (${copies} copies) to ${scaledCsv} in ${scaleSeconds.toFixed(1)} s.`);

    const sizes: Size[] = [
      { label: 'real file', csv: source, rows: sourceRows },
      { label: `${copies} copies`, csv: scaledCsv, rows: scaledRows },
    ];
    const rows: Row[] = [];
    let countsMatch = true;
    let tablesMatch = true;

    for (const size of sizes) {
      const chosen = implementations(python).filter((i) => !i.isRowwise || size.rows <= rowwiseMaxRows);
      const results = new Map<Implementation, Measurement[]>(chosen.map((i) => [i, []]));
      // Implementations take turns within each round, so a slow phase of the machine hits all of them.
      for (let run = 1; run <= runs; run += 1) {
        for (const implementation of chosen) {
          const outDir = path.join(workDir, `out-${chosen.indexOf(implementation)}`);
          fs.rmSync(outDir, { recursive: true, force: true });
          const result = measure(implementation.command(size.csv, outDir), useTime);
          results.get(implementation)?.push(result);
          console.log(
            `${size.label}, run ${run}, ${implementation.label}: ${result.wallSeconds.toFixed(2)} s, ` +
              `${formatNumber(result.peakRssKiB / 1024)} MiB`,
          );
        }
      }

      // The output folders still contain the last run's tables, so compare every implementation with ours.
      const [ours, ...others] = chosen;
      const reference = results.get(ours)?.[0] as RunOutput;
      for (const implementation of chosen) {
        for (const output of results.get(implementation) ?? []) {
          if (countsLine(output) !== countsLine(reference)) {
            countsMatch = false;
            console.log(`Row counts differ for ${size.label}: ${implementation.label} gave ${countsLine(output)}, but ours gave ${countsLine(reference)}.`);
          }
        }
      }
      for (const implementation of others) {
        for (const table of TABLES) {
          const differing = await countDifferingRows(
            ours.tableFile(path.join(workDir, 'out-0'), table),
            implementation.tableFile(path.join(workDir, `out-${chosen.indexOf(implementation)}`), table),
          );
          if (differing > 0) {
            tablesMatch = false;
            console.log(`${size.label}, table ${table}: ${differing} rows differ between ours and ${implementation.label}.`);
          }
        }
      }
      console.log(`${size.label}: row counts of every run: ${countsLine(reference)}.`);

      for (const implementation of chosen) {
        const measurements = results.get(implementation) ?? [];
        const wallSeconds = median(measurements.map((m) => m.wallSeconds));
        rows.push({
          size,
          implementation,
          wallSeconds,
          inProcessSeconds: median(measurements.map((m) => m.seconds)),
          peakRssMiB: median(measurements.map((m) => m.peakRssKiB)) / 1024,
          rowsPerSecond: size.rows / wallSeconds,
        });
      }
    }

    console.log(
      `\nMedian of ${runs} runs per cell. Wall time is the whole process (start-up and imports included), ` +
        'measured by this script; in-process time excludes start-up and imports. rows/s = input rows / wall time.\n',
    );
    printTable(rows);
    console.log(
      `\nRow counts per table (train/test/extra) ${countsMatch ? 'are the same' : 'DIFFER'} for every implementation and run; ` +
        `table contents (every column but update_timestamp_utc) ${tablesMatch ? 'are the same' : 'DIFFER'}.`,
    );
    reportTargets(rows, sizes[sizes.length - 1]);
    console.log(`Load average after: ${formatLoad()}.`);
    if (!countsMatch || !tablesMatch) process.exitCode = 1;
  } finally {
    if (values.keep) console.log(`Kept ${workDir}.`);
    else fs.rmSync(workDir, { recursive: true, force: true });
  }
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
