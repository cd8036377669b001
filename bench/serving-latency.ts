// Measures what the local serving plane adds to an MLflow model server. It times `dataframe_records`
// invocations sent through the plane and sent straight to the model server of the same served
// entity, in the same run, for latency and for throughput. It also times the first request after
// scale to zero.
//
// Usage: npx tsx bench/serving-latency.ts [--model fixture|lightgbm] [--data CSV] [--out FILE]
//   (--help lists every option)
//
// It starts its own MLflow tracking server on 127.0.0.1:25000 and its own serving plane on
// 127.0.0.1:28080 with the commands of `npm run stack:up`, so the plane runs as `serving/main.ts` in
// its own Node process. State goes to .mlops-bench/serving-latency, which each run empties first.
// The model is the `good` fixture (test/helpers/fixture_models.py: a scikit-learn pipeline with a
// logistic regression over the 14 booking columns) or, with --model lightgbm, the product's basic
// variant, trained and registered by one pipeline run on a Temporal dev server on port 27233 (UI
// 28233) that is stopped before the measurements. Two endpoints of Small workload size (1 uvicorn
// worker) serve the model, one with payload logging (an inference table) and one without, each with
// its own model server. A bare Node proxy (runBareProxy) in front of the second model server shows
// what any extra HTTP hop costs.
//
// Method:
// - Latency: sequential requests from one client over keep-alive connections, taking turns between
//   the five cases (plane and direct with logging on, plane, direct and bare proxy with logging off)
//   in an order that rotates every round, so that every case sees the same machine load. Warm-up
//   requests are discarded. Percentiles are nearest-rank.
// - Throughput: a fixed number of concurrent clients in a closed loop for a fixed time per block, one
//   case at a time, in rotating order over several rounds. Each block starts with one second of
//   warm-up whose requests are not counted.
// - Cold start: a third endpoint with scale_to_zero_enabled and payload logging, which the plane
//   scales to zero after --idle-seconds without invocations. Once the old model server has exited,
//   one request is timed and the plane's x-cold-start-ms header read.
// Every response must be HTTP 200 with one prediction per record, or the benchmark fails. The load
// generator, the plane and the model servers share the machine's cores, so the figures hold for the
// machine they ran on. CPU times of each process group come from /proc.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';
import { connectClient, DEFAULT_DATA_FILE, startPipeline } from '../client/pipeline';
import { createLogger } from '../common/logger';
import { PYTHON_BIN, REPO_ROOT } from '../common/paths';
import { buildPipelineSpec, loadProjectConfig } from '../config/load';
import { catalogDir, logsDir, mlflowUrl, servingUrl, stackSettings, type StackSettings } from '../config/stack';
import { LocalCatalog } from '../platform/catalog/local';
import { modelServerPidDir, reapModelServers } from '../serving/orphans';
import type { ServingEndpointDetailed } from '../serving/types';
import { alive, portInUse, stopService } from '../stack/launcher';
import { ensureTemporalCli } from '../stack/provision';
import { mlflowService, servingService, temporalService, type ServiceDefinition } from '../stack/services';
import { registerFixtureModels } from '../test/helpers/fixture-models';
import { installTemporalLogging } from '../worker/logging';
import { createWorker } from '../worker/worker';

const BENCH_DIR = path.join(REPO_ROOT, '.mlops-bench');
const STATE_DIR = path.join(BENCH_DIR, 'serving-latency');
const FIXTURE_MODEL_NAME = 'bench_serving_latency';
/** Catalog and schema of the payload tables, in the plane's local catalog. */
const PAYLOAD_CATALOG = 'bench';
const PAYLOAD_SCHEMA = 'serving';
/** Maximum time for a new endpoint to become READY. One model server took 5-15 s to start on 2 cores. */
const DEPLOY_TIMEOUT_MS = 300_000;
const POLL_INTERVAL_MS = 200;
/**
 * Keep-alive time of the client's pooled connections. uvicorn closes idle connections after 5 s, so
 * the pool drops them a second earlier, as the plane's own model server client does.
 */
const KEEP_ALIVE_TIMEOUT_MS = 4_000;
/** Clock ticks per second of /proc CPU times (USER_HZ). */
const CLOCK_TICKS_PER_SECOND = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;
const TARGET_OVERHEAD_PERCENT = 10;

// ---------------------------------------------------------------------------------------------
// Options

const HELP = `Usage: npx tsx bench/serving-latency.ts [options]

  --out FILE                 JSON results file (default .mlops-bench/results/serving-latency-<model>-<time>.json)
  --samples-1 N              timed sequential requests per case with 1 record (default 1000)
  --samples-100 N            timed sequential requests per case with 100 records (default 300)
  --warmup N                 discarded requests per case before the timed ones (default 50)
  --concurrency N            concurrent clients in the throughput blocks (default 8)
  --block-seconds S          measured seconds of one throughput block, after 1 s of warm-up (default 5)
  --rounds N                 throughput blocks per case (default 3)
  --cold-starts N            cold starts timed after scale to zero (default 3)
  --idle-seconds S           idle time before the plane scales the cold-start endpoint to zero (default 2)
  --model fixture|lightgbm   model to serve (default fixture). lightgbm trains and registers the product's
                             basic variant by running the pipeline on --data, which also starts Temporal
  --data FILE                bookings CSV for --model lightgbm (default data/hotel_reservations.csv)
`;

type ModelChoice = 'fixture' | 'lightgbm';

interface BenchOptions {
  out: string;
  model: ModelChoice;
  data: string;
  samples: Record<BatchSize, number>;
  warmup: number;
  concurrency: number;
  blockSeconds: number;
  rounds: number;
  coldStarts: number;
  idleSeconds: number;
}

type BatchSize = 1 | 100;
const BATCH_SIZES: BatchSize[] = [1, 100];

function positiveNumber(name: string, raw: string, integer: boolean): number {
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || (integer && !Number.isInteger(value))) {
    throw new Error(`Invalid --${name} ${raw}: expected a ${integer ? 'whole number' : 'number'} greater than 0.`);
  }
  return value;
}

function parseOptions(): BenchOptions {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      'samples-1': { type: 'string', default: '1000' },
      'samples-100': { type: 'string', default: '300' },
      warmup: { type: 'string', default: '50' },
      concurrency: { type: 'string', default: '8' },
      'block-seconds': { type: 'string', default: '5' },
      rounds: { type: 'string', default: '3' },
      'cold-starts': { type: 'string', default: '3' },
      'idle-seconds': { type: 'string', default: '2' },
      model: { type: 'string', default: 'fixture' },
      data: { type: 'string', default: DEFAULT_DATA_FILE },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  if (values.model !== 'fixture' && values.model !== 'lightgbm') {
    throw new Error(`Invalid --model ${values.model}: expected fixture or lightgbm.`);
  }
  if (values.model === 'lightgbm' && !fs.existsSync(values.data)) {
    throw new Error(`Bookings CSV ${values.data} not found: pass the hotel reservations file with --data FILE.`);
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  return {
    out: path.resolve(values.out ?? path.join(BENCH_DIR, 'results', `serving-latency-${values.model}-${stamp}.json`)),
    model: values.model,
    data: path.resolve(values.data),
    samples: {
      1: positiveNumber('samples-1', values['samples-1'], true),
      100: positiveNumber('samples-100', values['samples-100'], true),
    },
    warmup: positiveNumber('warmup', values.warmup, true),
    concurrency: positiveNumber('concurrency', values.concurrency, true),
    blockSeconds: positiveNumber('block-seconds', values['block-seconds'], false),
    rounds: positiveNumber('rounds', values.rounds, true),
    coldStarts: positiveNumber('cold-starts', values['cold-starts'], true),
    idleSeconds: positiveNumber('idle-seconds', values['idle-seconds'], false),
  };
}

// ---------------------------------------------------------------------------------------------
// Services: the MLflow tracking server and the serving plane, started and stopped by this process

/** Names of the services this process started, in start order. */
const started: Array<ServiceDefinition['name']> = [];
/** The bare proxy's process, stopped together with the services. */
let bareProxy: ChildProcess | undefined;
let stopping: Promise<void> | undefined;

function logTail(file: string): string {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').slice(-15).join('\n') : '(no log file)';
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Spawns a service in its own process group with its output in its log file, and waits for its health
 * check. The pid goes to `<stateDir>/run/<name>.pid`, where stack/launcher.ts's stopService finds it.
 */
async function startService(settings: StackSettings, service: ServiceDefinition): Promise<number> {
  if (await portInUse(settings.host, service.port)) {
    throw new Error(`Port ${service.port} on ${settings.host} is in use, so ${service.name} cannot start there. Stop the program that listens on it.`);
  }
  fs.mkdirSync(path.dirname(service.logFile), { recursive: true });
  fs.mkdirSync(path.join(settings.stateDir, 'run'), { recursive: true });
  const log = fs.openSync(service.logFile, 'a');
  const child = spawn(service.command, service.args, {
    detached: true,
    stdio: ['ignore', log, log],
    env: { ...process.env, ...service.env },
  });
  fs.closeSync(log);
  child.unref();
  if (child.pid === undefined) throw new Error(`Could not start ${service.name} (${service.command}).`);
  fs.writeFileSync(path.join(settings.stateDir, 'run', `${service.name}.pid`), String(child.pid));
  started.push(service.name);

  const deadline = Date.now() + service.startTimeoutMs;
  while (!(await service.healthy())) {
    if (!alive(child.pid)) {
      throw new Error(`${service.name} exited during start-up. Last lines of ${service.logFile}:\n${logTail(service.logFile)}`);
    }
    if (Date.now() > deadline) {
      throw new Error(`${service.name} did not become healthy within ${service.startTimeoutMs / 1000} s. See ${service.logFile}.`);
    }
    await sleep(300);
  }
  console.log(`${service.name}: ready, pid ${child.pid} (${service.describe()})`);
  return child.pid;
}

/**
 * Stops the services this process started, newest first. Stopping the plane stops its model servers.
 * Safe to call more than once.
 */
function stopServices(settings: StackSettings): Promise<void> {
  stopping ??= (async () => {
    if (bareProxy?.pid !== undefined && bareProxy.exitCode === null) bareProxy.kill('SIGTERM');
    for (const name of [...started].reverse()) await stopService(settings, name);
  })();
  return stopping;
}

// ---------------------------------------------------------------------------------------------
// Endpoints

/** A served entity's model server, as the plane's deployment_state_message names it. */
interface ModelServerAddress {
  url: string;
  pid: number;
}

interface EndpointUnderTest {
  name: string;
  payloadLogging: boolean;
  invocationsUrl: string;
  modelServer: ModelServerAddress;
}

/**
 * Reads the model server URL from the served entity's deployment_state_message, which reads "Model
 * server for models:/NAME/VERSION is ready at URL (pid PID)." The REST API has no field for it.
 */
function modelServerOf(endpoint: ServingEndpointDetailed): ModelServerAddress {
  const message = endpoint.config?.served_entities[0]?.state.deployment_state_message ?? '';
  const match = /ready at (http:\/\/[^\s]+) \(pid (\d+)\)/.exec(message);
  if (!match) throw new Error(`Endpoint ${endpoint.name}: no model server URL in deployment_state_message ${JSON.stringify(message)}.`);
  return { url: match[1], pid: Number(match[2]) };
}

async function getEndpoint(planeUrl: string, name: string): Promise<ServingEndpointDetailed> {
  const response = await request(`${planeUrl}/api/2.0/serving-endpoints/${name}`);
  const text = await response.body.text();
  if (response.statusCode !== 200) throw new Error(`GET endpoint ${name} failed with HTTP ${response.statusCode}: ${text}`);
  return JSON.parse(text) as ServingEndpointDetailed;
}

/** Creates an endpoint that serves one model version and waits until it is READY. */
async function createEndpoint(
  planeUrl: string,
  name: string,
  model: { name: string; version: string },
  options: { payloadLogging: boolean; scaleToZero: boolean },
): Promise<EndpointUnderTest> {
  const body = {
    name,
    config: {
      served_entities: [
        {
          entity_name: model.name,
          entity_version: model.version,
          workload_size: 'Small',
          scale_to_zero_enabled: options.scaleToZero,
        },
      ],
    },
    ...(options.payloadLogging
      ? { ai_gateway: { inference_table_config: { catalog_name: PAYLOAD_CATALOG, schema_name: PAYLOAD_SCHEMA, enabled: true } } }
      : {}),
  };
  const response = await request(`${planeUrl}/api/2.0/serving-endpoints`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await response.body.text();
  if (response.statusCode !== 200) throw new Error(`Creating endpoint ${name} failed with HTTP ${response.statusCode}: ${text}`);

  const deadline = Date.now() + DEPLOY_TIMEOUT_MS;
  for (;;) {
    const endpoint = await getEndpoint(planeUrl, name);
    if (endpoint.state.config_update === 'UPDATE_FAILED') {
      throw new Error(`Endpoint ${name} failed to deploy: ${endpoint.state_message}. See the model server logs under ${STATE_DIR}/logs.`);
    }
    if (endpoint.state.ready === 'READY' && endpoint.state.config_update === 'NOT_UPDATING') {
      return { name, payloadLogging: options.payloadLogging, invocationsUrl: endpoint.endpoint_url, modelServer: modelServerOf(endpoint) };
    }
    if (Date.now() > deadline) {
      throw new Error(`Endpoint ${name} was not READY after ${DEPLOY_TIMEOUT_MS / 1000} s: ${JSON.stringify(endpoint.state)}.`);
    }
    await sleep(POLL_INTERVAL_MS);
  }
}

// ---------------------------------------------------------------------------------------------
// Requests

const MEAL_PLANS = ['Meal Plan 1', 'Not Selected', 'Meal Plan 2', 'Meal Plan 3'];
const ROOM_TYPES = ['Room_Type 1', 'Room_Type 4', 'Room_Type 6', 'Room_Type 2', 'Room_Type 5'];
const SEGMENTS = ['Online', 'Online', 'Online', 'Offline', 'Corporate'];

/** Returns `count` made-up bookings with the 14 model inputs, varied but the same in every run. */
function bookingRecords(count: number): Array<Record<string, string | number>> {
  return Array.from({ length: count }, (_, i) => ({
    no_of_adults: 1 + (i % 3),
    no_of_children: i % 4 === 0 ? 1 : 0,
    no_of_weekend_nights: i % 3,
    no_of_week_nights: 1 + ((i * 5) % 6),
    required_car_parking_space: i % 7 === 0 ? 1 : 0,
    lead_time: (i * 37) % 400,
    repeated_guest: i % 11 === 0 ? 1 : 0,
    no_of_previous_cancellations: i % 13 === 0 ? 1 : 0,
    no_of_previous_bookings_not_canceled: i % 9 === 0 ? 2 : 0,
    avg_price_per_room: 60 + ((i * 13) % 150) + 0.5,
    no_of_special_requests: i % 4,
    type_of_meal_plan: MEAL_PLANS[i % MEAL_PLANS.length],
    room_type_reserved: ROOM_TYPES[i % ROOM_TYPES.length],
    market_segment_type: SEGMENTS[i % SEGMENTS.length],
  }));
}

/** One way of reaching one model server: through the plane or straight to it. */
interface Target {
  /** Such as `plane, logging on`. */
  label: string;
  /** bare-proxy is a pass-through Node proxy (see runBareProxy), a floor for any extra HTTP hop. */
  route: 'plane' | 'direct' | 'bare-proxy';
  payloadLogging: boolean;
  url: string;
  /** Requests sent, warm-up included. */
  sent: number;
}

interface Invocation {
  ms: number;
  coldStartMs?: number;
}

// One pool per origin, so the plane and each model server keep their own keep-alive connections.
const agent = new Agent({ keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS, keepAliveMaxTimeout: KEEP_ALIVE_TIMEOUT_MS });

/**
 * Sends one invocation and returns its latency, from sending the request to reading the whole body.
 * Throws unless the response is HTTP 200 with one prediction per record.
 */
async function invoke(target: Target, body: string, records: number): Promise<Invocation> {
  target.sent += 1;
  const startedAt = performance.now();
  const response = await request(target.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    dispatcher: agent,
  });
  const text = await response.body.text();
  const ms = performance.now() - startedAt;

  if (response.statusCode !== 200) {
    throw new Error(`${target.label}: HTTP ${response.statusCode} from ${target.url}: ${text.slice(0, 500)}`);
  }
  const predictions = (JSON.parse(text) as { predictions?: unknown[] }).predictions;
  if (!Array.isArray(predictions) || predictions.length !== records) {
    throw new Error(`${target.label}: expected ${records} predictions from ${target.url}, got ${text.slice(0, 500)}`);
  }
  const header = response.headers['x-cold-start-ms'];
  return { ms, coldStartMs: typeof header === 'string' ? Number(header) : undefined };
}

// ---------------------------------------------------------------------------------------------
// Bare proxy: the baseline of an extra HTTP hop

const BARE_PROXY_COMMAND = 'bare-proxy';

/**
 * Serves `POST /invocations` by forwarding the body unchanged to `modelServerUrl`, with no validation,
 * logging, metrics or payload table, over keep-alive connections (undici, as the plane uses). Prints
 * `listening PORT` once it accepts connections on 127.0.0.1. Exits on SIGTERM or when stdin closes.
 */
function runBareProxy(modelServerUrl: string): void {
  const upstream = new Agent({ keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS, keepAliveMaxTimeout: KEEP_ALIVE_TIMEOUT_MS });
  const server = http.createServer((incoming, outgoing) => {
    const chunks: Buffer[] = [];
    incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
    incoming.on('end', () => {
      request(`${modelServerUrl}/invocations`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: Buffer.concat(chunks),
        dispatcher: upstream,
      })
        .then(async (response) => {
          const body = Buffer.from(await response.body.arrayBuffer());
          outgoing.writeHead(response.statusCode, { 'content-type': String(response.headers['content-type'] ?? 'application/json') });
          outgoing.end(body);
        })
        .catch((error: Error) => {
          outgoing.writeHead(502, { 'content-type': 'text/plain' });
          outgoing.end(`Forwarding to ${modelServerUrl} failed: ${error.message}`);
        });
    });
  });
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    console.log(`listening ${typeof address === 'object' && address !== null ? address.port : 0}`);
  });
  process.once('SIGTERM', () => process.exit(0));
  // The benchmark keeps this pipe open, so the proxy also ends when the benchmark dies without stopping it.
  process.stdin.resume();
  process.stdin.once('close', () => process.exit(0));
}

/** Starts the bare proxy in its own process group and returns its URL and pid. */
function startBareProxy(modelServerUrl: string): Promise<{ url: string; pid: number }> {
  const child = spawn(process.execPath, ['--import', 'tsx', __filename, BARE_PROXY_COMMAND, modelServerUrl], {
    detached: true,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  bareProxy = child;
  return new Promise((resolve, reject) => {
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening (\d+)/.exec(output);
      if (match && child.pid !== undefined) resolve({ url: `http://127.0.0.1:${match[1]}`, pid: child.pid });
    });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`The bare proxy exited with code ${code} before it listened.`)));
  });
}

// ---------------------------------------------------------------------------------------------
// CPU accounting from /proc

/** CPU time: the machine's busy ticks, each watched process group's ticks and this process's seconds. */
interface CpuSnapshot {
  machineBusy: number;
  groups: Map<number, number>;
  selfSeconds: number;
}

/**
 * Reads the busy ticks of all CPUs, the user+system ticks of every process summed per process group,
 * and this process's CPU time. tsx runs this script in a child process of its own group leader, so
 * this process is not counted by group.
 */
function cpuSnapshot(groups: number[]): CpuSnapshot {
  const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal: everything but idle and iowait is busy.
  const machineBusy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + (fields[7] ?? 0);
  const wanted = new Set(groups);
  const totals = new Map<number, number>(groups.map((group) => [group, 0]));
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // The process exited between the listing and the read.
    }
    // The command name in brackets may contain spaces, so the fields are counted after its ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const group = Number(rest[2]);
    if (!wanted.has(group)) continue;
    totals.set(group, (totals.get(group) ?? 0) + Number(rest[11]) + Number(rest[12]));
  }
  const self = process.cpuUsage();
  return { machineBusy, groups: totals, selfSeconds: (self.user + self.system) / 1e6 };
}

/** Page size in bytes, the unit of the resident set size in /proc/PID/stat. */
const PAGE_BYTES = Number(spawnSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).stdout.trim()) || 4096;

/** Returns the resident memory in MiB of all processes of a process group, such as a model server and its workers. */
function groupRssMiB(group: number): number {
  let pages = 0;
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // The process exited between the listing and the read.
    }
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(rest[2]) === group) pages += Number(rest[21]);
  }
  return Math.round((pages * PAGE_BYTES) / 2 ** 20);
}

interface CpuUse {
  machine: number;
  groups: Map<number, number>;
  self: number;
}

/** CPU seconds used between two snapshots: by the whole machine, per watched group and by this process. */
function cpuSeconds(before: CpuSnapshot, after: CpuSnapshot): CpuUse {
  const groups = new Map<number, number>();
  for (const [group, ticks] of after.groups) groups.set(group, (ticks - (before.groups.get(group) ?? 0)) / CLOCK_TICKS_PER_SECOND);
  return {
    machine: (after.machineBusy - before.machineBusy) / CLOCK_TICKS_PER_SECOND,
    groups,
    self: after.selfSeconds - before.selfSeconds,
  };
}

// ---------------------------------------------------------------------------------------------
// Statistics

/** Nearest-rank percentile of ascending `sorted`. */
function percentile(sorted: number[], p: number): number {
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1];
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

interface LatencySummary {
  samples: number;
  p50: number;
  p95: number;
  p99: number;
  mean: number;
  max: number;
}

function summarize(latencies: number[]): LatencySummary {
  const sorted = [...latencies].sort((a, b) => a - b);
  const round = (ms: number): number => Math.round(ms * 1000) / 1000;
  return {
    samples: sorted.length,
    p50: round(percentile(sorted, 50)),
    p95: round(percentile(sorted, 95)),
    p99: round(percentile(sorted, 99)),
    mean: round(sorted.reduce((sum, ms) => sum + ms, 0) / sorted.length),
    max: round(sorted[sorted.length - 1]),
  };
}

// ---------------------------------------------------------------------------------------------
// Phases

interface LatencyResult {
  records: BatchSize;
  target: string;
  route: Target['route'];
  payloadLogging: boolean;
  latencyMs: LatencySummary;
}

/** Times `samples` sequential requests per target, taking turns in an order that rotates every round. */
async function measureLatency(targets: Target[], records: BatchSize, warmup: number, samples: number): Promise<LatencyResult[]> {
  const body = JSON.stringify({ dataframe_records: bookingRecords(records) });
  for (let i = 0; i < warmup; i++) for (const target of targets) await invoke(target, body, records);

  const latencies = new Map<Target, number[]>(targets.map((target) => [target, []]));
  for (let i = 0; i < samples; i++) {
    for (let k = 0; k < targets.length; k++) {
      const target = targets[(i + k) % targets.length];
      latencies.get(target)!.push((await invoke(target, body, records)).ms);
    }
  }
  return targets.map((target) => ({
    records,
    target: target.label,
    route: target.route,
    payloadLogging: target.payloadLogging,
    latencyMs: summarize(latencies.get(target)!),
  }));
}

interface ThroughputBlock {
  requests: number;
  seconds: number;
  latencies: number[];
  /** CPU seconds used during the block, warm-up included. */
  cpu: CpuUse;
  wallSeconds: number;
}

/**
 * Runs `concurrency` clients in a closed loop against one target for 1 s of warm-up plus
 * `seconds`, and counts the requests that complete within the measured window.
 */
async function throughputBlock(
  target: Target,
  body: string,
  records: number,
  concurrency: number,
  seconds: number,
  watchedGroups: number[],
): Promise<ThroughputBlock> {
  const cpuBefore = cpuSnapshot(watchedGroups);
  const startedAt = performance.now();
  const measureFrom = startedAt + 1000;
  const end = measureFrom + seconds * 1000;
  const latencies: number[] = [];

  const client = async (): Promise<void> => {
    while (performance.now() < end) {
      const sentAt = performance.now();
      await invoke(target, body, records);
      const doneAt = performance.now();
      if (doneAt >= measureFrom && doneAt <= end) latencies.push(doneAt - sentAt);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, client));
  const wallSeconds = (performance.now() - startedAt) / 1000;
  const cpu = cpuSeconds(cpuBefore, cpuSnapshot(watchedGroups));
  return { requests: latencies.length, seconds, latencies, cpu, wallSeconds };
}

interface ThroughputResult {
  records: BatchSize;
  target: string;
  route: Target['route'];
  payloadLogging: boolean;
  concurrency: number;
  requestsPerSecond: number;
  recordsPerSecond: number;
  /** Requests per second of each block, in run order. */
  blockRequestsPerSecond: number[];
  latencyMs: LatencySummary;
  /**
   * CPU ms per counted request of the process between client and model server (the plane or the bare
   * proxy, absent for direct requests), of the model server and of the load generator.
   */
  cpuMsPerRequest: { hop?: number; modelServer: number; loadGenerator: number };
}

/** Process group ids, which /proc CPU times are summed by. */
interface ProcessGroups {
  /** The plane or the bare proxy that a target's requests pass, undefined for direct requests. */
  hopOf: (target: Target) => number | undefined;
  modelServerOf: (target: Target) => number;
  /** Every watched group: the plane, the bare proxy, the model servers and the tracking server. */
  all: number[];
}

async function measureThroughput(targets: Target[], records: BatchSize, options: BenchOptions, groups: ProcessGroups): Promise<ThroughputResult[]> {
  const body = JSON.stringify({ dataframe_records: bookingRecords(records) });
  const blocks = new Map<Target, ThroughputBlock[]>(targets.map((target) => [target, []]));
  for (let round = 0; round < options.rounds; round++) {
    for (let k = 0; k < targets.length; k++) {
      const target = targets[(round + k) % targets.length];
      const block = await throughputBlock(target, body, records, options.concurrency, options.blockSeconds, groups.all);
      blocks.get(target)!.push(block);
      console.log(`  ${records} record(s), ${target.label}, round ${round + 1}: ${(block.requests / block.seconds).toFixed(1)} requests/s`);
    }
  }

  return targets.map((target) => {
    const done = blocks.get(target)!;
    const requests = done.reduce((sum, block) => sum + block.requests, 0);
    const seconds = done.reduce((sum, block) => sum + block.seconds, 0);
    // CPU covers each whole block, warm-up included, so it is divided by the requests of the whole block.
    const allRequests = done.reduce((sum, block) => sum + block.requests * (block.wallSeconds / block.seconds), 0);
    const cpuOf = (group: number): number => done.reduce((sum, block) => sum + (block.cpu.groups.get(group) ?? 0), 0);
    const perRequestMs = (cpu: number): number => Math.round((cpu / allRequests) * 1e6) / 1000;
    const hop = groups.hopOf(target);
    return {
      records,
      target: target.label,
      route: target.route,
      payloadLogging: target.payloadLogging,
      concurrency: options.concurrency,
      requestsPerSecond: Math.round((requests / seconds) * 10) / 10,
      recordsPerSecond: Math.round((requests * records) / seconds),
      blockRequestsPerSecond: done.map((block) => Math.round((block.requests / block.seconds) * 10) / 10),
      latencyMs: summarize(done.flatMap((block) => block.latencies)),
      cpuMsPerRequest: {
        hop: hop === undefined ? undefined : perRequestMs(cpuOf(hop)),
        modelServer: perRequestMs(cpuOf(groups.modelServerOf(target))),
        loadGenerator: perRequestMs(done.reduce((sum, block) => sum + block.cpu.self, 0)),
      },
    };
  });
}

interface ColdStartResult {
  attempt: number;
  latencyMs: number;
  coldStartHeaderMs?: number;
}

/** Waits until the plane scaled the endpoint to zero and the model server process `pid` has exited. */
async function waitForScaleToZero(planeUrl: string, name: string, pid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const endpoint = await getEndpoint(planeUrl, name);
    const message = endpoint.config?.served_entities[0]?.state.deployment_state_message ?? '';
    if (message.startsWith('Scaled to zero since') && !alive(pid)) return;
    if (Date.now() > deadline) {
      throw new Error(`Endpoint ${name} was not scaled to zero within ${timeoutMs / 1000} s: ${JSON.stringify(message)}.`);
    }
    await sleep(POLL_INTERVAL_MS);
  }
}

async function measureColdStarts(planeUrl: string, endpoint: EndpointUnderTest, options: BenchOptions): Promise<ColdStartResult[]> {
  const target: Target = { label: 'plane, cold start', route: 'plane', payloadLogging: true, url: endpoint.invocationsUrl, sent: 0 };
  const body = JSON.stringify({ dataframe_records: bookingRecords(1) });
  const results: ColdStartResult[] = [];
  let pid = endpoint.modelServer.pid;
  for (let attempt = 1; attempt <= options.coldStarts; attempt++) {
    await waitForScaleToZero(planeUrl, endpoint.name, pid, options.idleSeconds * 1000 + 60_000);
    const { ms, coldStartMs } = await invoke(target, body, 1);
    results.push({ attempt, latencyMs: Math.round(ms), coldStartHeaderMs: coldStartMs });
    console.log(`  cold start ${attempt}: first request ${Math.round(ms)} ms, x-cold-start-ms ${coldStartMs ?? 'missing'}`);
    pid = modelServerOf(await getEndpoint(planeUrl, endpoint.name)).pid;
  }
  return results;
}

// ---------------------------------------------------------------------------------------------
// Machine facts

function commandOutput(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim() : `(failed: ${command} ${args.join(' ')})`;
}

function machineFacts(): Record<string, unknown> {
  const osRelease = fs.existsSync('/etc/os-release') ? fs.readFileSync('/etc/os-release', 'utf8') : '';
  const python = commandOutput(PYTHON_BIN, [
    '-c',
    "import sys, importlib.metadata as m; print(sys.version.split()[0], *(f'{p}={m.version(p)}' for p in ('mlflow', 'scikit-learn', 'lightgbm', 'uvicorn', 'pandas')))",
  ]);
  return {
    cores: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    os: /PRETTY_NAME="([^"]*)"/.exec(osRelease)?.[1] ?? os.release(),
    node: process.version,
    python,
    commit: commandOutput('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD']),
    uncommittedChanges: commandOutput('git', ['-C', REPO_ROOT, 'status', '--porcelain']) !== '',
  };
}

// ---------------------------------------------------------------------------------------------
// Report

const fixed = (value: number, digits = 2): string => value.toFixed(digits);

function printLatency(results: LatencyResult[], options: BenchOptions): void {
  console.log(`\nLatency of sequential requests, ms (nearest-rank percentiles; ${options.warmup} warm-up requests per case discarded)\n`);
  console.log('| records | payload logging | path | samples | p50 | p95 | p99 | mean | max |');
  console.log('| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of results) {
    const l = r.latencyMs;
    console.log(`| ${r.records} | ${r.payloadLogging ? 'on' : 'off'} | ${r.route} | ${l.samples} | ${fixed(l.p50)} | ${fixed(l.p95)} | ${fixed(l.p99)} | ${fixed(l.mean)} | ${fixed(l.max)} |`);
  }
}

/** The p50 latency that a hop (the plane or the bare proxy) adds to direct requests to the same model server. */
interface OverheadResult {
  records: BatchSize;
  route: Exclude<Target['route'], 'direct'>;
  payloadLogging: boolean;
  hopP50Ms: number;
  directP50Ms: number;
  overheadMs: number;
  overheadPercent: number;
  /** Whether the plane meets the p50 overhead target; absent for the bare proxy, which has no target. */
  targetMet?: boolean;
}

function overheads(results: LatencyResult[]): OverheadResult[] {
  const overheadList: OverheadResult[] = [];
  const cases = [
    { route: 'plane', payloadLogging: true },
    { route: 'plane', payloadLogging: false },
    { route: 'bare-proxy', payloadLogging: false },
  ] as const;
  for (const records of BATCH_SIZES) {
    for (const { route, payloadLogging } of cases) {
      const resultOf = (candidate: Target['route']): LatencyResult | undefined =>
        results.find((r) => r.records === records && r.payloadLogging === payloadLogging && r.route === candidate);
      const hop = resultOf(route);
      const direct = resultOf('direct');
      if (!hop || !direct) continue;
      const overheadMs = hop.latencyMs.p50 - direct.latencyMs.p50;
      const overheadPercent = (overheadMs / direct.latencyMs.p50) * 100;
      overheadList.push({
        records,
        route,
        payloadLogging,
        hopP50Ms: hop.latencyMs.p50,
        directP50Ms: direct.latencyMs.p50,
        overheadMs: Math.round(overheadMs * 1000) / 1000,
        overheadPercent: Math.round(overheadPercent * 10) / 10,
        ...(route === 'plane' ? { targetMet: overheadPercent <= TARGET_OVERHEAD_PERCENT } : {}),
      });
    }
  }
  return overheadList;
}

function printOverheads(results: OverheadResult[]): void {
  console.log(`\np50 overhead over direct requests, target for the plane <= ${TARGET_OVERHEAD_PERCENT} %\n`);
  console.log('| records | path | payload logging | path p50 ms | direct p50 ms | overhead ms | overhead % | target |');
  console.log('| ---: | --- | --- | ---: | ---: | ---: | ---: | --- |');
  for (const r of results) {
    let target = '–';
    if (r.targetMet !== undefined) target = r.targetMet ? 'met' : 'not met';
    console.log(
      `| ${r.records} | ${r.route} | ${r.payloadLogging ? 'on' : 'off'} | ${fixed(r.hopP50Ms)} | ${fixed(r.directP50Ms)} | ` +
        `${fixed(r.overheadMs)} | ${fixed(r.overheadPercent, 1)} | ${target} |`,
    );
  }
}

function printThroughput(results: ThroughputResult[], options: BenchOptions): void {
  console.log(
    `\nThroughput with ${options.concurrency} concurrent clients, ${options.rounds} blocks of ${options.blockSeconds} s per case (after 1 s of warm-up each)\n`,
  );
  console.log('| records | payload logging | path | requests/s | records/s | requests/s per block | p50 ms | p99 ms | CPU ms per request: hop, model server, load generator |');
  console.log('| ---: | --- | --- | ---: | ---: | --- | ---: | ---: | --- |');
  for (const r of results) {
    const cpu = r.cpuMsPerRequest;
    console.log(
      `| ${r.records} | ${r.payloadLogging ? 'on' : 'off'} | ${r.route} | ${fixed(r.requestsPerSecond, 1)} | ${r.recordsPerSecond} | ` +
        `${r.blockRequestsPerSecond.join(', ')} | ${fixed(r.latencyMs.p50)} | ${fixed(r.latencyMs.p99)} | ` +
        `${cpu.hop === undefined ? '–' : fixed(cpu.hop)}, ${fixed(cpu.modelServer)}, ${fixed(cpu.loadGenerator)} |`,
    );
  }
}

function printColdStarts(results: ColdStartResult[], options: BenchOptions): void {
  console.log(`\nCold start after ${options.idleSeconds} s idle (scale to zero), 1 record, payload logging on\n`);
  console.log('| attempt | first request ms | x-cold-start-ms |');
  console.log('| ---: | ---: | ---: |');
  for (const r of results) console.log(`| ${r.attempt} | ${r.latencyMs} | ${r.coldStartHeaderMs ?? 'missing'} |`);
  const headers = results.map((r) => r.coldStartHeaderMs).filter((ms): ms is number => ms !== undefined);
  console.log(`| median | ${median(results.map((r) => r.latencyMs))} | ${headers.length > 0 ? median(headers) : 'missing'} |`);
}

// ---------------------------------------------------------------------------------------------
// Models

interface ModelUnderTest {
  name: string;
  version: string;
  description: string;
}

async function registerFixtureModel(settings: StackSettings): Promise<ModelUnderTest> {
  const [version] = await registerFixtureModels(mlflowUrl(settings), FIXTURE_MODEL_NAME, ['good']);
  return { ...version, description: 'fixture kind good: scikit-learn pipeline with a logistic regression' };
}

/**
 * Trains, logs and registers the product's basic variant (LightGBM) by running the pipeline on
 * `dataFile` with a worker in this process. Then stops the worker and Temporal, and deletes the
 * endpoint that the pipeline deployed, so that only the benchmark's endpoints run model servers.
 */
async function registerLightGbmModel(settings: StackSettings, dataFile: string, planeUrl: string): Promise<ModelUnderTest> {
  // The Temporal dev server does not create the folder of its database file.
  fs.mkdirSync(path.join(settings.stateDir, 'temporal'), { recursive: true });
  await startService(settings, temporalService(settings, await ensureTemporalCli()));
  installTemporalLogging(createLogger('worker', { file: path.join(logsDir(settings), 'worker.log') }));
  const { worker, run } = await createWorker(settings, { identity: 'bench-serving-latency' });
  const workerDone = run();
  const client = await connectClient(settings);
  try {
    const spec = buildPipelineSpec(loadProjectConfig(), {
      env: 'dev',
      sourcePath: dataFile,
      gitSha: 'bench',
      branch: 'bench',
      variants: ['basic'],
      // The plane scales idle servers to zero after --idle-seconds, which could turn the pipeline's
      // smoke test into a cold start that exceeds its latency limit.
      serving: { readyTimeoutSeconds: 600, pollIntervalSeconds: 1, scaleToZeroEnabled: false },
    });
    console.log(`training the basic variant on ${dataFile} with the pipeline (about a minute)`);
    const result = await (await startPipeline(client, settings, spec, `bench-serving-latency-${Date.now()}`)).result();
    const [variant] = result.variants;
    if (variant.deployment) {
      const deleted = await request(`${planeUrl}/api/2.0/serving-endpoints/${variant.deployment.endpoint}`, { method: 'DELETE' });
      await deleted.body.text();
    }
    const metrics = variant.training.metrics;
    return {
      name: variant.modelVersion.name,
      version: variant.modelVersion.version,
      description: `pipeline variant basic: LightGBM in a scikit-learn pipeline, ROC AUC ${metrics.roc_auc.toFixed(4)} on the test split`,
    };
  } finally {
    await client.connection.close();
    worker.shutdown();
    await workerDone;
    await stopService(settings, 'temporal');
    started.splice(started.indexOf('temporal'), 1);
  }
}

// ---------------------------------------------------------------------------------------------
// Main

/** Returns the number of rows in an endpoint's payload table. */
function payloadRows(settings: StackSettings, endpoint: string): number {
  const catalog = new LocalCatalog(catalogDir(settings));
  // The plane's APPEND versions carry the table's total row count.
  return catalog.latest({ catalog: PAYLOAD_CATALOG, schema: PAYLOAD_SCHEMA, name: `${endpoint}_payload` })?.rowCount ?? 0;
}

/** Settings of the bench's own stack, on ports clear of the demo stack and the test stack. */
function benchSettings(idleSeconds: number): StackSettings {
  return stackSettings({
    MLOPS_STATE_DIR: STATE_DIR,
    MLOPS_TEMPORAL_PORT: '27233',
    MLOPS_TEMPORAL_UI_PORT: '28233',
    MLOPS_TASK_QUEUE: 'bench-serving-latency',
    MLOPS_MLFLOW_PORT: '25000',
    MLOPS_SERVING_PORT: '28080',
    MLOPS_SERVING_SCALE_TO_ZERO_IDLE_SECONDS: String(idleSeconds),
  });
}

async function main(settings: StackSettings, options: BenchOptions): Promise<void> {
  const onSignal = (signal: NodeJS.Signals): void => {
    console.error(`${signal} received: stopping the serving plane, its model servers and the MLflow server.`);
    void stopServices(settings).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  // Model servers of an earlier run that was killed would keep running. The reaper checks that each
  // recorded pid still runs mlflow before it signals it.
  reapModelServers(modelServerPidDir(STATE_DIR));
  fs.rmSync(STATE_DIR, { recursive: true, force: true });
  const machine = machineFacts();
  const loadBefore = os.loadavg();
  console.log(`machine: ${JSON.stringify(machine)}, load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')}`);

  const mlflowPid = await startService(settings, mlflowService(settings));
  const planePid = await startService(settings, servingService(settings));
  const planeUrl = servingUrl(settings);

  const model =
    options.model === 'lightgbm' ? await registerLightGbmModel(settings, options.data, planeUrl) : await registerFixtureModel(settings);
  console.log(`registered ${model.name} version ${model.version} (${model.description})`);
  const [logged, plain] = await Promise.all([
    createEndpoint(planeUrl, 'bench-logged', model, { payloadLogging: true, scaleToZero: false }),
    createEndpoint(planeUrl, 'bench-plain', model, { payloadLogging: false, scaleToZero: false }),
  ]);
  const proxy = await startBareProxy(plain.modelServer.url);
  console.log(`bare proxy: ready, pid ${proxy.pid} (${proxy.url} to ${plain.modelServer.url})`);

  const targets: Target[] = [];
  for (const endpoint of [logged, plain]) {
    const logging = endpoint.payloadLogging ? 'on' : 'off';
    targets.push({ label: `plane, logging ${logging}`, route: 'plane', payloadLogging: endpoint.payloadLogging, url: endpoint.invocationsUrl, sent: 0 });
    targets.push({ label: `direct, logging ${logging}`, route: 'direct', payloadLogging: endpoint.payloadLogging, url: `${endpoint.modelServer.url}/invocations`, sent: 0 });
  }
  targets.push({ label: 'bare proxy, logging off', route: 'bare-proxy', payloadLogging: false, url: `${proxy.url}/invocations`, sent: 0 });
  const groups: ProcessGroups = {
    hopOf: (target) => ({ plane: planePid, 'bare-proxy': proxy.pid, direct: undefined })[target.route],
    modelServerOf: (target) => (target.payloadLogging ? logged : plain).modelServer.pid,
    all: [planePid, proxy.pid, logged.modelServer.pid, plain.modelServer.pid, mlflowPid],
  };

  const runCpuBefore = cpuSnapshot(groups.all);
  const latency: LatencyResult[] = [];
  for (const records of BATCH_SIZES) {
    console.log(`latency: ${records} record(s), ${options.samples[records]} samples per case`);
    latency.push(...(await measureLatency(targets, records, options.warmup, options.samples[records])));
  }
  const throughput: ThroughputResult[] = [];
  for (const records of BATCH_SIZES) {
    console.log(`throughput: ${records} record(s)`);
    throughput.push(...(await measureThroughput(targets, records, options, groups)));
  }
  const runCpu = cpuSeconds(runCpuBefore, cpuSnapshot(groups.all));
  const memoryMiB = { plane: groupRssMiB(planePid), modelServer: groupRssMiB(plain.modelServer.pid) };
  const oursCpu = [...runCpu.groups.values()].reduce((sum, seconds) => sum + seconds, runCpu.self);

  bareProxy?.kill('SIGTERM');
  console.log('cold start');
  const cold = await createEndpoint(planeUrl, 'bench-cold', model, { payloadLogging: true, scaleToZero: true });
  const coldStarts = await measureColdStarts(planeUrl, cold, options);
  const loadAfter = os.loadavg();

  // Stopping the plane writes its buffered payload rows, so the tables are complete only afterwards.
  await stopServices(settings);
  const requestsToLogged = targets.filter((t) => t.route === 'plane' && t.payloadLogging).reduce((sum, t) => sum + t.sent, 0);
  const payload = { endpoint: logged.name, requestsSent: requestsToLogged, rowsWritten: payloadRows(settings, logged.name) };

  const overhead = overheads(latency);
  printLatency(latency, options);
  printOverheads(overhead);
  printThroughput(throughput, options);
  printColdStarts(coldStarts, options);
  const otherCpuSeconds = runCpu.machine - oursCpu;
  console.log(
    `\nPayload table ${payload.endpoint}_payload: ${payload.rowsWritten} rows for ${payload.requestsSent} requests through the plane.` +
      `\nCPU during latency and throughput: ${fixed(runCpu.machine, 1)} s busy on the machine, ${fixed(otherCpuSeconds, 1)} s of it ` +
      `outside this benchmark's processes (the /proc sums are accurate to a few tenths of a second).` +
      `\nResident memory after the throughput runs: serving plane ${memoryMiB.plane} MiB, one model server (1 worker) ${memoryMiB.modelServer} MiB.` +
      `\nLoad average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${loadAfter.map((l) => l.toFixed(2)).join(' ')}.`,
  );

  const results = {
    date: new Date().toISOString(),
    command: `npx tsx bench/serving-latency.ts ${process.argv.slice(2).join(' ')}`.trim(),
    machine,
    options,
    model,
    latency,
    overhead,
    throughput,
    coldStarts,
    payloadTable: payload,
    memoryMiB,
    cpuSeconds: { machineBusy: runCpu.machine, outsideBenchmark: otherCpuSeconds },
    loadAverage: { before: loadBefore, after: loadAfter },
  };
  fs.mkdirSync(path.dirname(options.out), { recursive: true });
  fs.writeFileSync(options.out, `${JSON.stringify(results, null, 2)}\n`);
  console.log(`Results: ${options.out}`);
}

if (process.argv[2] === BARE_PROXY_COMMAND) {
  runBareProxy(process.argv[3]);
} else {
  let benchOptions: BenchOptions;
  try {
    benchOptions = parseOptions();
  } catch (error) {
    console.error((error as Error).message);
    process.exit(2);
  }
  const settings = benchSettings(benchOptions.idleSeconds);
  main(settings, benchOptions).then(
    () => process.exit(0),
    async (error: Error) => {
      console.error(error.message);
      await stopServices(settings).catch(() => undefined);
      process.exit(1);
    },
  );
}
