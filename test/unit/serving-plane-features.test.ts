import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import axios from 'axios';
import pino from 'pino';
import { openDuckDB } from '../../activities/ingestion';
import { stackSettings } from '../../config/stack';
import { LocalCatalog } from '../../platform/catalog/local';
import type { TableName } from '../../platform/catalog/port';
import { ServingFaults } from '../../serving/faults';
import { InferenceTableWriter, type PayloadRow } from '../../serving/inference-table';
import { ServingMetrics } from '../../serving/metrics';
import type { ModelServerHandle, ModelServerLauncher, ModelServerSpec } from '../../serving/model-server';
import { MlflowModelVersionCheck } from '../../serving/model-versions';
import { FailureLogThrottle } from '../../serving/invocations';
import { createServingPlane, servingStateFile, type ServingPlane, type ServingPlaneOptions } from '../../serving/server';

/**
 * Tests of scale to zero, the per-served-entity route, Prometheus metrics, inference tables, the AI
 * gateway API and fault injection, over HTTP on 127.0.0.1. Model servers are in-process HTTP servers
 * started by a fake launcher. Payload tables are real Parquet files, read back with DuckDB.
 */

interface FakeBehavior {
  /** Delay in ms before the fake server becomes ready. */
  startDelayMs?: number;
  /** The start waits for this promise, so a test decides when the server becomes ready. */
  gate?: Promise<void>;
  /** Makes start() reject with this message after the delay. */
  failWith?: string;
  /** HTTP status of every invocation response (default 200). */
  responseStatus?: number;
  /** Delay in ms before each invocation response. */
  responseDelayMs?: number;
}

class FakeModelServer implements ModelServerHandle {
  stopped = false;
  /** Parsed bodies of the invocations this server received. */
  readonly bodies: Array<Record<string, unknown>> = [];
  /** Number of TCP connections accepted, to check connection reuse. */
  connections = 0;
  private exitCallbacks: Array<(code: number | null, signal: NodeJS.Signals | null) => void> = [];

  constructor(
    readonly spec: ModelServerSpec,
    readonly server: http.Server,
    readonly url: string,
    readonly pid: number,
  ) {
    server.on('connection', () => {
      this.connections += 1;
    });
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const callback of this.exitCallbacks.splice(0)) callback(null, 'SIGTERM');
  }

  onExit(callback: (code: number | null, signal: NodeJS.Signals | null) => void): void {
    this.exitCallbacks.push(callback);
  }
}

class FakeLauncher implements ModelServerLauncher {
  /** Behavior per entity version. Versions without an entry start at once and respond with 200. */
  readonly behaviors = new Map<string, FakeBehavior>();
  readonly servers: FakeModelServer[] = [];
  startCalls = 0;
  private nextPid = 200_000;

  async start(spec: ModelServerSpec): Promise<ModelServerHandle> {
    this.startCalls += 1;
    const behavior = this.behaviors.get(spec.entityVersion) ?? {};
    if (behavior.startDelayMs) await new Promise((resolve) => setTimeout(resolve, behavior.startDelayMs));
    if (behavior.gate) {
      await Promise.race([
        behavior.gate,
        new Promise((_, reject) => spec.signal?.addEventListener('abort', () => reject(new Error('start canceled')))),
      ]);
    }
    if (behavior.failWith) throw new Error(behavior.failWith);
    spec.signal?.throwIfAborted();

    let fake: FakeModelServer;
    const server = http.createServer((request, response) => {
      if (request.url === '/ping') {
        response.writeHead(200).end();
        return;
      }
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
        fake.bodies.push(body);
        const current = this.behaviors.get(spec.entityVersion) ?? {};
        const status = current.responseStatus ?? 200;
        const records = Array.isArray(body.dataframe_records) ? body.dataframe_records : [null];
        const payload = status === 200 ? { predictions: records.map(() => 0), version: spec.entityVersion } : { error_code: 'BAD_REQUEST', message: 'model failed' };
        setTimeout(() => {
          response.writeHead(status, { 'content-type': 'application/json' });
          response.end(JSON.stringify(payload));
        }, current.responseDelayMs ?? 0);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    fake = new FakeModelServer(spec, server, `http://127.0.0.1:${port}`, this.nextPid++);
    this.servers.push(fake);
    return fake;
  }

  running(): FakeModelServer[] {
    return this.servers.filter((server) => !server.stopped);
  }
}

function gate(): { promise: Promise<void>; open: () => void } {
  let open = (): void => undefined;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

const MODEL = 'mlops_dev.acikgozm.hotel_reservations_model_basic';
const records = { dataframe_records: [{ lead_time: 10 }, { lead_time: 20 }] };
const INFERENCE_TABLE = { catalog_name: 'mlops_dev', schema_name: 'serving', table_name_prefix: 'hotel', enabled: true };
const PAYLOAD_TABLE: TableName = { catalog: 'mlops_dev', schema: 'serving', name: 'hotel_payload' };

function createBody(name: string, version = '1', extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name, config: { served_entities: [{ entity_name: MODEL, entity_version: version, ...extra }] } };
}

function twoEntityBody(name: string): Record<string, unknown> {
  return {
    name,
    config: {
      served_entities: [
        { name: 'champion', entity_name: MODEL, entity_version: '1', scale_to_zero_enabled: false },
        { name: 'challenger', entity_name: MODEL, entity_version: '2', scale_to_zero_enabled: false },
      ],
      traffic_config: {
        routes: [
          { served_entity_name: 'champion', traffic_percentage: 100 },
          { served_entity_name: 'challenger', traffic_percentage: 0 },
        ],
      },
    },
  };
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
type PlaneOptions = Partial<Omit<ServingPlaneOptions, 'host' | 'port' | 'stateDir' | 'trackingUri' | 'logger'>>;

interface Harness {
  plane: ServingPlane;
  baseUrl: string;
  launcher: FakeLauncher;
  stateDir: string;
  catalogRoot: string;
  logLines: string[];
}

const openPlanes: ServingPlane[] = [];
const tempDirs: string[] = [];

async function newHarness(options: PlaneOptions = {}, stateDir?: string): Promise<Harness> {
  const dir = stateDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'serving-features-test-'));
  if (!stateDir) tempDirs.push(dir);
  const launcher = (options.launcher as FakeLauncher | undefined) ?? new FakeLauncher();
  const logLines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => logLines.push(line) });
  const catalogRoot = options.catalogRoot ?? path.join(dir, 'catalog');
  const plane = createServingPlane({
    host: '127.0.0.1',
    port: 0,
    stateDir: dir,
    trackingUri: 'http://127.0.0.1:1',
    logger,
    drainTimeoutMs: 2_000,
    // Long enough that no interval flush runs during a test unless the test sets a shorter one.
    payloadFlushIntervalMs: 600_000,
    ...options,
    launcher,
    catalogRoot,
  });
  openPlanes.push(plane);
  const baseUrl = await plane.listen();
  return { plane, baseUrl, launcher, stateDir: dir, catalogRoot, logLines };
}

afterEach(async () => {
  await Promise.all(openPlanes.splice(0).map((plane) => plane.close()));
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

async function api(harness: Harness, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: unknown) {
  const response = await axios.request({
    method,
    url: `${harness.baseUrl}${url}`,
    data: payload === undefined ? undefined : JSON.stringify(payload),
    headers: payload === undefined ? {} : { 'content-type': 'application/json' },
    validateStatus: () => true,
    proxy: false,
    transformResponse: (text: string) => text,
  });
  const text = response.data as string;
  const isJson = String(response.headers['content-type'] ?? '').includes('json');
  return { status: response.status, body: (isJson && text ? JSON.parse(text) : {}) as Json, text, headers: response.headers };
}

const getEndpoint = (harness: Harness, name: string) => api(harness, 'GET', `/api/2.0/serving-endpoints/${name}`);
const invoke = (harness: Harness, name: string, payload: unknown = records) =>
  api(harness, 'POST', `/serving-endpoints/${name}/invocations`, payload);
const invokeEntity = (harness: Harness, name: string, servedEntity: string, payload: unknown = records) =>
  api(harness, 'POST', `/serving-endpoints/${name}/served-models/${servedEntity}/invocations`, payload);

async function waitForEndpoint(harness: Harness, name: string, predicate: (endpoint: Json) => boolean, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  let last: Json = {};
  while (Date.now() < deadline) {
    last = (await getEndpoint(harness, name)).body;
    if (predicate(last)) return last;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`Endpoint ${name} did not reach the expected state within ${timeoutMs} ms. Last state: ${JSON.stringify(last)}`);
}

async function waitForCondition(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Condition still false after ${timeoutMs} ms.`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const isReady = (endpoint: Json) => endpoint.state?.ready === 'READY' && endpoint.state?.config_update === 'NOT_UPDATING';

function logEntries(harness: Harness, message: string): Json[] {
  return harness.logLines.map((line) => JSON.parse(line) as Json).filter((entry) => entry.msg === message);
}

/** Returns the value of the one sample of `name` whose labels include `labels`, or undefined. */
function sampleValue(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const matches = Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`));
    if (matches) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

async function queryRows(sql: string): Promise<Json[]> {
  const { instance, connection } = await openDuckDB();
  try {
    return (await connection.runAndReadAll(sql)).getRowObjectsJson() as Json[];
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

function snapshotRows(catalogRoot: string, version: number): Promise<Json[]> {
  const file = new LocalCatalog(catalogRoot).snapshotPath({ ...PAYLOAD_TABLE, version });
  return queryRows(`SELECT * FROM read_parquet('${file}') ORDER BY timestamp_ms, databricks_request_id`);
}

/** Creates an endpoint, waits until it has scaled to zero (after 150 ms unless `options` sets scaleToZeroIdleMs) and returns its harness. */
async function scaledToZeroEndpoint(options: PlaneOptions = {}): Promise<Harness> {
  const harness = await newHarness({ scaleToZeroIdleMs: 150, ...options });
  await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'));
  await waitForEndpoint(harness, 'hotel', isReady);
  await waitForCondition(() => harness.launcher.running().length === 0);
  return harness;
}

describe('scale to zero', () => {
  test('idle entity stops and stays READY', async () => {
    const harness = await scaledToZeroEndpoint();

    const endpoint = await getEndpoint(harness, 'hotel');
    expect(endpoint.body.state).toEqual({ ready: 'READY', config_update: 'NOT_UPDATING' });
    const entity = endpoint.body.config.served_entities[0];
    expect(entity.state.deployment).toBe('DEPLOYMENT_READY');
    expect(entity.state.deployment_state_message).toContain('Scaled to zero');
    expect(entity.state.deployment_state_message).toContain('The next invocation starts the model server');

    const [stopLog] = logEntries(harness, 'scaled to zero');
    expect(stopLog).toMatchObject({ endpoint: 'hotel', servedEntity: 'hotel_reservations_model_basic-1' });
    expect(stopLog.idleMs).toBeGreaterThanOrEqual(150);
    const metrics = await api(harness, 'GET', '/metrics');
    expect(sampleValue(metrics.text, 'serving_endpoint_ready', { endpoint: 'hotel' })).toBe(1);
  });

  test('next invocation cold-starts the server', async () => {
    const harness = await scaledToZeroEndpoint();
    harness.launcher.behaviors.set('1', { startDelayMs: 60 });

    const response = await invoke(harness, 'hotel');
    // Both requests follow at once, well within the 150 ms idle time, so they find the server running.
    const warm = await invoke(harness, 'hotel');
    const entity = (await getEndpoint(harness, 'hotel')).body.config.served_entities[0];
    expect(response.status).toBe(200);
    expect(response.body.predictions).toEqual([0, 0]);
    const coldStartMs = Number(response.headers['x-cold-start-ms']);
    expect(coldStartMs).toBeGreaterThanOrEqual(60);
    expect(harness.launcher.startCalls).toBe(2);
    expect(harness.launcher.running()).toHaveLength(1);

    const [coldStartLog] = logEntries(harness, 'cold start');
    expect(coldStartLog).toMatchObject({ endpoint: 'hotel', servedEntity: 'hotel_reservations_model_basic-1' });
    expect(coldStartLog.durationMs).toBeGreaterThanOrEqual(60);

    const metrics = await api(harness, 'GET', '/api/2.0/serving-endpoints/hotel/metrics');
    const labels = { endpoint: 'hotel', served_entity: 'hotel_reservations_model_basic-1', entity_version: '1' };
    expect(sampleValue(metrics.text, 'serving_cold_starts_total', labels)).toBe(1);
    expect(sampleValue(metrics.text, 'serving_cold_start_duration_seconds_count', labels)).toBe(1);

    // The server runs again, so the next invocation has no cold start.
    expect(warm.status).toBe(200);
    expect(warm.headers['x-cold-start-ms']).toBeUndefined();
    expect(entity.state.deployment_state_message).toContain('started again by an invocation after scale to zero');
  });

  test('concurrent requests share one cold start', async () => {
    const harness = await scaledToZeroEndpoint();
    const release = gate();
    harness.launcher.behaviors.set('1', { gate: release.promise });

    const pending = Array.from({ length: 5 }, () => invoke(harness, 'hotel'));
    await waitForCondition(() => harness.launcher.startCalls === 2);
    const starting = (await getEndpoint(harness, 'hotel')).body.config.served_entities[0];
    expect(starting.state.deployment_state_message).toContain('An invocation is starting the model server');
    release.open();

    const responses = await Promise.all(pending);
    for (const response of responses) {
      expect(response.status).toBe(200);
      expect(Number(response.headers['x-cold-start-ms'])).toBeGreaterThanOrEqual(0);
    }
    expect(harness.launcher.startCalls).toBe(2);
    expect(logEntries(harness, 'cold start')).toHaveLength(1);
    const metrics = await api(harness, 'GET', '/metrics');
    expect(sampleValue(metrics.text, 'serving_cold_starts_total', { endpoint: 'hotel' })).toBe(1);
  });

  test('failed cold start returns 503 then recovers', async () => {
    const harness = await scaledToZeroEndpoint();
    harness.launcher.behaviors.set('1', { failWith: 'model version 1 not found in the registry' });

    const failed = await invoke(harness, 'hotel');
    expect(failed.status).toBe(503);
    expect(failed.body.error_code).toBe('TEMPORARILY_UNAVAILABLE');
    expect(failed.body.message).toContain('model version 1 not found in the registry');
    expect(failed.body.message).toContain(path.join(harness.stateDir, 'logs', 'model-server-hotel-hotel_reservations_model_basic-1.log'));
    expect(logEntries(harness, 'cold start failed')).toHaveLength(1);

    const endpoint = (await getEndpoint(harness, 'hotel')).body;
    expect(endpoint.state.ready).toBe('READY');
    expect(endpoint.config.served_entities[0].state.deployment_state_message).toContain('The last start failed');

    harness.launcher.behaviors.delete('1');
    const recovered = await invoke(harness, 'hotel');
    expect(recovered.status).toBe(200);
    expect(recovered.headers['x-cold-start-ms']).toBeDefined();
    expect(harness.launcher.startCalls).toBe(3);
    const metrics = await api(harness, 'GET', '/metrics');
    const labels = { endpoint: 'hotel', served_entity: 'hotel_reservations_model_basic-1' };
    expect(sampleValue(metrics.text, 'serving_request_errors_total', labels)).toBe(1);
    expect(sampleValue(metrics.text, 'serving_requests_total', { ...labels, status: '503' })).toBe(1);
  });

  test('cold start is bounded by the ready timeout', async () => {
    const harness = await scaledToZeroEndpoint({ readyTimeoutMs: 200 });
    harness.launcher.behaviors.set('1', { gate: gate().promise });

    const startedAt = Date.now();
    const response = await invoke(harness, 'hotel');
    expect(response.status).toBe(503);
    expect(response.body.message).toContain('did not become ready within 200 ms');
    expect(Date.now() - startedAt).toBeLessThan(3_000);
    expect(harness.launcher.running()).toHaveLength(0);
  });

  test('close cancels a cold start', async () => {
    const harness = await scaledToZeroEndpoint();
    harness.launcher.behaviors.set('1', { gate: gate().promise });

    const pending = invoke(harness, 'hotel');
    await waitForCondition(() => harness.launcher.startCalls === 2);
    const startedAt = Date.now();
    await harness.plane.close();
    expect(Date.now() - startedAt).toBeLessThan(3_000);

    const response = await pending;
    expect(response.status).toBe(503);
    expect(response.body.message).toContain('the serving plane is shutting down.');
  });

  test('entity without scale to zero keeps running', async () => {
    const harness = await newHarness({ scaleToZeroIdleMs: 100 });
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1', { scale_to_zero_enabled: false }));
    await waitForEndpoint(harness, 'hotel', isReady);

    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(harness.launcher.running()).toHaveLength(1);
    expect(logEntries(harness, 'scaled to zero')).toHaveLength(0);
    const response = await invoke(harness, 'hotel');
    expect(response.status).toBe(200);
    expect(response.headers['x-cold-start-ms']).toBeUndefined();
    expect(harness.launcher.startCalls).toBe(1);
  });

  test('invocation in flight blocks scale to zero', async () => {
    // Starting from zero means no stop can happen between READY and the invocation, whatever the load.
    const harness = await scaledToZeroEndpoint();
    harness.launcher.behaviors.set('1', { responseDelayMs: 600 });

    const response = await invoke(harness, 'hotel');
    expect(response.status).toBe(200);
    expect(logEntries(harness, 'scaled to zero')).toHaveLength(1);
    expect(harness.launcher.startCalls).toBe(2);
  });

  test('update replaces a scaled-to-zero entity', async () => {
    const harness = await scaledToZeroEndpoint();

    const accepted = await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', {
      served_entities: [{ entity_name: MODEL, entity_version: '2', scale_to_zero_enabled: false }],
    });
    expect(accepted.status).toBe(200);
    const updated = await waitForEndpoint(harness, 'hotel', (e) => isReady(e) && e.config.config_version === 2);
    expect(updated.config.served_entities[0].entity_version).toBe('2');

    const response = await invoke(harness, 'hotel');
    expect(response.status).toBe(200);
    expect(response.body.version).toBe('2');
    expect(harness.launcher.running().map((server) => server.spec.entityVersion)).toEqual(['2']);
  });

  test('update reuses a scaled-to-zero entity', async () => {
    const harness = await scaledToZeroEndpoint();

    await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', {
      served_entities: [{ name: 'renamed', entity_name: MODEL, entity_version: '1' }],
    });
    const updated = await waitForEndpoint(harness, 'hotel', (e) => isReady(e) && e.config.config_version === 2);
    expect(updated.config.served_entities[0].state.deployment_state_message).toContain('Scaled to zero');
    expect(harness.launcher.startCalls).toBe(1);

    const response = await invoke(harness, 'hotel');
    expect(response.status).toBe(200);
    expect(response.headers['served-model-name']).toBe('renamed');
    expect(response.headers['x-cold-start-ms']).toBeDefined();
  });

  test('delete of a scaled-to-zero endpoint', async () => {
    const harness = await scaledToZeroEndpoint();

    const deleted = await api(harness, 'DELETE', '/api/2.0/serving-endpoints/hotel');
    expect(deleted.status).toBe(200);
    expect((await getEndpoint(harness, 'hotel')).status).toBe(404);
    expect(harness.launcher.running()).toHaveLength(0);
  });

  test('delete during a cold start stops the new server', async () => {
    const harness = await scaledToZeroEndpoint();
    const release = gate();
    harness.launcher.behaviors.set('1', { gate: release.promise });

    const pending = invoke(harness, 'hotel');
    await waitForCondition(() => harness.launcher.startCalls === 2);
    const deleted = await api(harness, 'DELETE', '/api/2.0/serving-endpoints/hotel');
    expect(deleted.status).toBe(200);
    release.open();

    const response = await pending;
    expect(response.status).toBe(503);
    expect(response.body.error_code).toBe('TEMPORARILY_UNAVAILABLE');
    expect(harness.launcher.running()).toHaveLength(0);
  });
});

describe('request errors', () => {
  test('malformed URL gets Databricks JSON', async () => {
    const harness = await newHarness();
    const response = await api(harness, 'GET', '/api/2.0/serving-endpoints/%ZZ');
    expect(response.status).toBe(400);
    expect(response.body.error_code).toBe('BAD_REQUEST');
    expect(response.body.message).toContain('Invalid request URL GET /api/2.0/serving-endpoints/%ZZ: it is not a valid URL');
  });

  test('overlong name gets Databricks JSON', async () => {
    const harness = await newHarness();
    const response = await api(harness, 'GET', `/api/2.0/serving-endpoints/${'a'.repeat(5000)}`);
    expect(response.status).toBe(400);
    expect(response.body.error_code).toBe('BAD_REQUEST');
    expect(response.body.message).toContain('a path parameter is longer than 100 characters');
    expect(response.body.message.length).toBeLessThan(400);
  });

  test('body over the limit names it', async () => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'));
    const big = JSON.stringify({ dataframe_records: [{ note: 'x'.repeat(17 * 2 ** 20) }] });
    const response = await api(harness, 'POST', '/serving-endpoints/hotel/invocations', JSON.parse(big));
    expect(response.status).toBe(413);
    expect(response.body.error_code).toBe('BAD_REQUEST');
    expect(response.body.message).toContain('larger than the limit of 16 MiB');
  });
});

describe('failure log throttle', () => {
  test('one line per key and interval', () => {
    let now = 0;
    const throttle = new FailureLogThrottle(() => now);
    expect(throttle.admit('hotel|TEMPORARILY_UNAVAILABLE')).toBe(0);
    expect(throttle.admit('hotel|TEMPORARILY_UNAVAILABLE')).toBeUndefined();
    expect(throttle.admit('hotel|TEMPORARILY_UNAVAILABLE')).toBeUndefined();
    expect(throttle.admit('hotel|DEADLINE_EXCEEDED')).toBe(0);
    expect(throttle.admit('other|TEMPORARILY_UNAVAILABLE')).toBe(0);
    now = 10_000;
    expect(throttle.admit('hotel|TEMPORARILY_UNAVAILABLE')).toBe(2);
    expect(throttle.admit('hotel|TEMPORARILY_UNAVAILABLE')).toBeUndefined();
  });

  test('outage logs one error line', async () => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1', { scale_to_zero_enabled: false }));
    await waitForEndpoint(harness, 'hotel', isReady);
    // A closed port without an exit report: every invocation fails with 503.
    const server = harness.launcher.servers[0] as unknown as { server: http.Server };
    server.server.closeAllConnections();
    await new Promise<void>((resolve) => server.server.close(() => resolve()));

    for (let i = 0; i < 5; i += 1) expect((await invoke(harness, 'hotel')).status).toBe(503);
    const lines = logEntries(harness, 'invocation failed');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ endpoint: 'hotel', errorCode: 'TEMPORARILY_UNAVAILABLE', suppressedSinceLastLine: 0 });
  });
});

describe('model version check', () => {
  /** Starts a stand-in for the MLflow registry that has version 1 only, and returns its URL. */
  async function registry(): Promise<{ url: string; close: () => Promise<void>; requests: string[] }> {
    const requests: string[] = [];
    const server = http.createServer((request, response) => {
      requests.push(request.url ?? '');
      const version = new URL(request.url ?? '/', 'http://x').searchParams.get('version');
      const found = version === '1';
      response.writeHead(found ? 200 : 404, { 'content-type': 'application/json' });
      response.end(JSON.stringify(found ? { model_version: { version } } : { error_code: 'RESOURCE_DOES_NOT_EXIST' }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    return { url: `http://127.0.0.1:${port}`, requests, close: () => new Promise((resolve) => server.close(() => resolve())) };
  }

  test('missing version is rejected before a start', async () => {
    const mlflow = await registry();
    try {
      const check = new MlflowModelVersionCheck(mlflow.url, pino({ level: 'silent' }));
      const harness = await newHarness({ modelVersionCheck: check });
      const refused = await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '99'));
      expect(refused.status).toBe(400);
      expect(refused.body.error_code).toBe('INVALID_PARAMETER_VALUE');
      expect(refused.body.message).toContain('config.served_entities[0]');
      expect(refused.body.message).toContain('has no version "99"');
      expect(harness.launcher.servers).toHaveLength(0);
      expect(mlflow.requests[0]).toContain(`name=${encodeURIComponent(MODEL)}`);

      expect((await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'))).status).toBe(200);
      await waitForEndpoint(harness, 'hotel', isReady);
      const update = await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', { served_entities: [{ entity_name: MODEL, entity_version: '2' }] });
      expect(update.status).toBe(400);
      expect(update.body.message).toContain('Invalid served_entities[0]');
      expect((await getEndpoint(harness, 'hotel')).body.state.config_update).toBe('NOT_UPDATING');
    } finally {
      await mlflow.close();
    }
  });

  test('unreachable registry skips the check', async () => {
    const logLines: string[] = [];
    const check = new MlflowModelVersionCheck('http://127.0.0.1:1', pino({}, { write: (line: string) => logLines.push(line) }));
    const harness = await newHarness({ modelVersionCheck: check });
    expect((await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'))).status).toBe(200);
    expect(logLines.join('')).toContain('model registry unreachable');
  });
});

describe('served entity route', () => {
  test('route ignores traffic percentages', async () => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', twoEntityBody('split'));
    await waitForEndpoint(harness, 'split', isReady);

    const routed = await invoke(harness, 'split');
    expect(routed.headers['served-model-name']).toBe('champion');
    const direct = await invokeEntity(harness, 'split', 'challenger');
    expect(direct.status).toBe(200);
    expect(direct.headers['served-model-name']).toBe('challenger');
    expect(direct.body.version).toBe('2');
  });

  test('unknown served entity returns 404', async () => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', twoEntityBody('split'));
    await waitForEndpoint(harness, 'split', isReady);

    const response = await invokeEntity(harness, 'split', 'nobody');
    expect(response.status).toBe(404);
    expect(response.body.error_code).toBe('RESOURCE_DOES_NOT_EXIST');
    expect(response.body.message).toContain('"nobody"');
    expect(response.body.message).toContain('champion, challenger');
  });

  test('unknown endpoint returns 404', async () => {
    const harness = await newHarness();
    const response = await invokeEntity(harness, 'missing', 'champion');
    expect(response.status).toBe(404);
    expect(response.body.error_code).toBe('RESOURCE_DOES_NOT_EXIST');
    expect(response.body.message).toContain('"missing"');
  });
});

describe('invocation forwarding', () => {
  test('connections to a model server are reused', async () => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1', { scale_to_zero_enabled: false }));
    await waitForEndpoint(harness, 'hotel', isReady);

    for (let i = 0; i < 10; i += 1) expect((await invoke(harness, 'hotel')).status).toBe(200);
    const server = harness.launcher.servers[0];
    expect(server.bodies).toHaveLength(10);
    expect(server.connections).toBe(1);
  });

  test('slow model server returns 504', async () => {
    const harness = await newHarness({ invocationTimeoutMs: 200 });
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1', { scale_to_zero_enabled: false }));
    await waitForEndpoint(harness, 'hotel', isReady);
    harness.launcher.behaviors.set('1', { responseDelayMs: 1_500 });

    const response = await invoke(harness, 'hotel');
    expect(response.status).toBe(504);
    expect(response.body.error_code).toBe('DEADLINE_EXCEEDED');
    expect(response.body.message).toContain('did not respond within 200 ms');
  });

  test('every response carries a request id', async () => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1', { scale_to_zero_enabled: false }));
    await waitForEndpoint(harness, 'hotel', isReady);

    const ok = await invoke(harness, 'hotel');
    const rejected = await invoke(harness, 'hotel', { nothing: 1 });
    expect(ok.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(rejected.status).toBe(400);
    expect(rejected.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(rejected.headers['x-request-id']).not.toBe(ok.headers['x-request-id']);
  });

  test('client_request_id must be a string', async () => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1', { scale_to_zero_enabled: false }));
    await waitForEndpoint(harness, 'hotel', isReady);

    const response = await invoke(harness, 'hotel', { ...records, client_request_id: 42 });
    expect(response.status).toBe(400);
    expect(response.body.error_code).toBe('BAD_REQUEST');
    expect(response.body.message).toContain('client_request_id must be a string, got a number');
  });
});

describe('serving metrics', () => {
  test('requests are counted per entity and status', async () => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', twoEntityBody('split'));
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('other', '3', { scale_to_zero_enabled: false }));
    await waitForEndpoint(harness, 'split', isReady);
    await waitForEndpoint(harness, 'other', isReady);

    await invoke(harness, 'split');
    await invoke(harness, 'split');
    await invokeEntity(harness, 'split', 'challenger');
    expect((await invoke(harness, 'split', { bad: true })).status).toBe(400);
    harness.launcher.behaviors.set('2', { responseStatus: 500 });
    expect((await invokeEntity(harness, 'split', 'challenger')).status).toBe(500);
    await invoke(harness, 'other');

    const response = await api(harness, 'GET', '/api/2.0/serving-endpoints/split/metrics');
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toContain('text/plain');
    const text = response.text;
    const champion = { endpoint: 'split', served_entity: 'champion', entity_name: MODEL, entity_version: '1' };
    const challenger = { endpoint: 'split', served_entity: 'challenger', entity_name: MODEL, entity_version: '2' };
    const noEntity = { endpoint: 'split', served_entity: '', entity_name: '', entity_version: '' };
    expect(sampleValue(text, 'serving_requests_total', { ...champion, status: '200' })).toBe(2);
    expect(sampleValue(text, 'serving_requests_total', { ...challenger, status: '200' })).toBe(1);
    expect(sampleValue(text, 'serving_requests_total', { ...challenger, status: '500' })).toBe(1);
    expect(sampleValue(text, 'serving_requests_total', { ...noEntity, status: '400' })).toBe(1);
    expect(sampleValue(text, 'serving_request_errors_total', challenger)).toBe(1);
    expect(sampleValue(text, 'serving_request_errors_total', champion)).toBeUndefined();
    expect(sampleValue(text, 'serving_request_duration_seconds_count', champion)).toBe(2);
    expect(sampleValue(text, 'serving_request_duration_seconds_bucket', { ...champion, le: '10' })).toBe(2);
    for (const bound of ['0.001', '0.0025', '0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5', '5']) {
      expect(sampleValue(text, 'serving_request_duration_seconds_bucket', { ...champion, le: bound })).toBeDefined();
    }
    expect(sampleValue(text, 'serving_endpoint_ready', { endpoint: 'split' })).toBe(1);
    expect(text).toContain('# TYPE serving_request_duration_seconds histogram');
    expect(text).not.toContain('endpoint="other"');

    const all = await api(harness, 'GET', '/metrics');
    expect(sampleValue(all.text, 'serving_requests_total', { endpoint: 'other', status: '200' })).toBe(1);
    expect(sampleValue(all.text, 'serving_requests_total', { ...champion, status: '200' })).toBe(2);
  });

  test('unsupported content type is counted', async () => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'));
    await waitForEndpoint(harness, 'hotel', isReady);

    const response = await axios.post(`${harness.baseUrl}/serving-endpoints/hotel/invocations`, '<records/>', {
      headers: { 'content-type': 'application/xml' },
      validateStatus: () => true,
      proxy: false,
    });
    expect(response.status).toBe(415);
    expect((response.data as Json).error_code).toBe('BAD_REQUEST');
    expect((response.data as Json).message).toContain('Content-Type: application/json');
    const metrics = await api(harness, 'GET', '/metrics');
    const noEntity = { endpoint: 'hotel', served_entity: '', entity_name: '', entity_version: '', status: '415' };
    expect(sampleValue(metrics.text, 'serving_requests_total', noEntity)).toBe(1);
  });

  test('unreachable model server counts as error', async () => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1', { scale_to_zero_enabled: false }));
    await waitForEndpoint(harness, 'hotel', isReady);
    const { server } = harness.launcher.servers[0];
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));

    const response = await invoke(harness, 'hotel');
    expect(response.status).toBe(503);
    expect(response.body.message).toContain('unreachable');
    const metrics = await api(harness, 'GET', '/metrics');
    const labels = { endpoint: 'hotel', served_entity: 'hotel_reservations_model_basic-1' };
    expect(sampleValue(metrics.text, 'serving_request_errors_total', labels)).toBe(1);
    expect(sampleValue(metrics.text, 'serving_requests_total', { ...labels, status: '503' })).toBe(1);
  });

  test('endpoint that is not ready reports 0', async () => {
    const harness = await newHarness();
    harness.launcher.behaviors.set('1', { gate: gate().promise });
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'));

    const rejected = await invoke(harness, 'hotel');
    expect(rejected.status).toBe(503);
    const metrics = await api(harness, 'GET', '/api/2.0/serving-endpoints/hotel/metrics');
    expect(sampleValue(metrics.text, 'serving_endpoint_ready', { endpoint: 'hotel' })).toBe(0);
    const noEntity = { endpoint: 'hotel', served_entity: '', entity_name: '', entity_version: '', status: '503' };
    expect(sampleValue(metrics.text, 'serving_requests_total', noEntity)).toBe(1);
    expect(sampleValue(metrics.text, 'serving_request_errors_total', { endpoint: 'hotel' })).toBeUndefined();
  });

  test('delete removes the endpoint series', async () => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'));
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('other', '2'));
    await waitForEndpoint(harness, 'hotel', isReady);
    await waitForEndpoint(harness, 'other', isReady);
    await invoke(harness, 'hotel');
    await invoke(harness, 'other');
    expect((await api(harness, 'GET', '/metrics')).text).toContain('endpoint="hotel"');

    await api(harness, 'DELETE', '/api/2.0/serving-endpoints/hotel');
    const all = (await api(harness, 'GET', '/metrics')).text;
    expect(all).not.toContain('endpoint="hotel"');
    expect(sampleValue(all, 'serving_requests_total', { endpoint: 'other', status: '200' })).toBe(1);
    const perEndpoint = await api(harness, 'GET', '/api/2.0/serving-endpoints/hotel/metrics');
    expect(perEndpoint.status).toBe(404);
    expect(perEndpoint.body.error_code).toBe('RESOURCE_DOES_NOT_EXIST');
  });

  test('each plane has its own registry', async () => {
    const first = await newHarness();
    const second = await newHarness();
    await api(first, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'));
    await waitForEndpoint(first, 'hotel', isReady);
    await invoke(first, 'hotel');

    expect((await api(first, 'GET', '/metrics')).text).toContain('endpoint="hotel"');
    expect((await api(second, 'GET', '/metrics')).text).not.toContain('endpoint="hotel"');
  });

  test('endpoint text keeps only its samples', async () => {
    const metrics = new ServingMetrics(() => [
      ['hotel', true],
      ['hotel-2', false],
    ]);
    const labels = { endpoint: 'hotel', served_entity: 'a', entity_name: 'm', entity_version: '1' };
    metrics.recordRequest(labels, 200, 0.003, false);
    metrics.recordRequest({ ...labels, endpoint: 'hotel-2' }, 200, 0.003, false);

    const text = await metrics.endpointText('hotel');
    expect(text).toContain('serving_endpoint_ready{endpoint="hotel"} 1');
    expect(text).not.toContain('hotel-2');
    expect(text).not.toContain('serving_cold_starts_total');
    expect(text.split('\n').filter((line) => line.startsWith('# HELP serving_requests_total'))).toHaveLength(1);
  });
});

describe('inference table', () => {
  test('rows are appended as table versions', async () => {
    const harness = await newHarness();
    const created = await api(harness, 'POST', '/api/2.0/serving-endpoints', {
      ...twoEntityBody('hotel'),
      ai_gateway: { inference_table_config: INFERENCE_TABLE },
    });
    expect(created.body.ai_gateway).toEqual({ inference_table_config: INFERENCE_TABLE });
    await waitForEndpoint(harness, 'hotel', isReady);

    const first = await invoke(harness, 'hotel', { ...records, client_request_id: 'booking-42' });
    const rejected = await invoke(harness, 'hotel', { nothing: 1 });
    const direct = await invokeEntity(harness, 'hotel', 'challenger', { dataframe_split: { columns: ['lead_time'], data: [[5]] } });
    expect([first.status, rejected.status, direct.status]).toEqual([200, 400, 200]);
    // The model server never receives client_request_id.
    expect(harness.launcher.servers[0].bodies).toEqual([records]);

    await harness.plane.flushPayloads();
    const catalog = new LocalCatalog(harness.catalogRoot);
    const history = catalog.history(PAYLOAD_TABLE);
    expect(history.map((entry) => [entry.version, entry.operation, entry.rowCount])).toEqual([[1, 'APPEND', 3]]);
    expect(history[0].changes).toEqual({ inserted: 3, updated: 0, deleted: 0 });

    const rows = await snapshotRows(harness.catalogRoot, 1);
    const byId = new Map(rows.map((row) => [row.databricks_request_id, row]));
    const firstRow = byId.get(first.headers['x-request-id']) as Json;
    expect(firstRow).toMatchObject({
      client_request_id: 'booking-42',
      status_code: 200,
      endpoint_name: 'hotel',
      served_entity_name: 'champion',
      entity_name: MODEL,
      entity_version: '1',
      cold_start_ms: null,
      date: new Date().toISOString().slice(0, 10),
    });
    expect(JSON.parse(firstRow.request as string)).toEqual(records);
    expect(JSON.parse(firstRow.response as string).predictions).toEqual([0, 0]);
    expect(Number(firstRow.timestamp_ms)).toBeGreaterThan(Date.now() - 60_000);
    expect(Number(firstRow.execution_time_ms)).toBeGreaterThanOrEqual(0);

    const rejectedRow = byId.get(rejected.headers['x-request-id']) as Json;
    expect(rejectedRow).toMatchObject({ status_code: 400, served_entity_name: null, entity_version: null, client_request_id: null });
    expect(JSON.parse(rejectedRow.response as string).error_code).toBe('BAD_REQUEST');
    expect(byId.get(direct.headers['x-request-id'])).toMatchObject({ served_entity_name: 'challenger', entity_version: '2' });

    await invoke(harness, 'hotel');
    await invoke(harness, 'hotel');
    await harness.plane.flushPayloads();
    const second = catalog.latest(PAYLOAD_TABLE);
    expect(second).toMatchObject({ version: 2, operation: 'APPEND', rowCount: 5 });
    expect(await snapshotRows(harness.catalogRoot, 2)).toHaveLength(5);
    const feed = await queryRows(`SELECT _change_type, databricks_request_id FROM ${catalog.changeFeedSql({ ...PAYLOAD_TABLE, version: 2 })}`);
    expect(feed).toHaveLength(2);
    expect(feed.every((row) => row._change_type === 'insert')).toBe(true);
    expect(feed.some((row) => byId.has(row.databricks_request_id as string))).toBe(false);
  });

  test('cold start time is recorded', async () => {
    const harness = await newHarness({ scaleToZeroIdleMs: 150 });
    await api(harness, 'POST', '/api/2.0/serving-endpoints', { ...createBody('hotel', '1'), ai_gateway: { inference_table_config: INFERENCE_TABLE } });
    await waitForEndpoint(harness, 'hotel', isReady);
    await waitForCondition(() => harness.launcher.running().length === 0);

    const cold = await invoke(harness, 'hotel');
    const warm = await invoke(harness, 'hotel');
    await harness.plane.flushPayloads();
    const rows = await snapshotRows(harness.catalogRoot, 1);
    const byId = new Map(rows.map((row) => [row.databricks_request_id, row]));
    expect(byId.get(cold.headers['x-request-id'])?.cold_start_ms).toBe(String(cold.headers['x-cold-start-ms']));
    expect(byId.get(warm.headers['x-request-id'])?.cold_start_ms).toBeNull();
  });

  test('failed flush keeps rows for the next one', async () => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', { ...createBody('hotel', '1'), ai_gateway: { inference_table_config: INFERENCE_TABLE } });
    await waitForEndpoint(harness, 'hotel', isReady);
    // A file where the catalog folder belongs makes every write of the table fail.
    fs.mkdirSync(harness.catalogRoot, { recursive: true });
    fs.writeFileSync(path.join(harness.catalogRoot, 'mlops_dev'), 'not a folder');

    const response = await invoke(harness, 'hotel');
    await harness.plane.flushPayloads();
    const [failure] = logEntries(harness, 'inference table flush failed, the rows stay buffered for the next flush');
    expect(failure).toMatchObject({ table: 'mlops_dev.serving.hotel_payload', rows: 1 });
    expect(typeof failure.error).toBe('string');

    fs.rmSync(path.join(harness.catalogRoot, 'mlops_dev'));
    await harness.plane.flushPayloads();
    const rows = await snapshotRows(harness.catalogRoot, 1);
    expect(rows.map((row) => row.databricks_request_id)).toEqual([response.headers['x-request-id']]);
  });

  test('full buffer drops the oldest rows', async () => {
    const harness = await newHarness({ payloadMaxBufferedRows: 3 });
    await api(harness, 'POST', '/api/2.0/serving-endpoints', { ...createBody('hotel', '1'), ai_gateway: { inference_table_config: INFERENCE_TABLE } });
    await waitForEndpoint(harness, 'hotel', isReady);

    const ids: string[] = [];
    for (let i = 0; i < 5; i += 1) ids.push(String((await invoke(harness, 'hotel')).headers['x-request-id']));
    const metrics = await api(harness, 'GET', '/api/2.0/serving-endpoints/hotel/metrics');
    expect(sampleValue(metrics.text, 'serving_payload_rows_dropped_total', { endpoint: 'hotel' })).toBe(2);
    expect(logEntries(harness, 'inference table buffer full, dropped the oldest rows')[0]).toMatchObject({ droppedRows: 1 });

    await harness.plane.flushPayloads();
    const rows = await snapshotRows(harness.catalogRoot, 1);
    expect(new Set(rows.map((row) => row.databricks_request_id))).toEqual(new Set(ids.slice(2)));
  });

  test('large payloads start a flush early', async () => {
    const harness = await newHarness({ payloadMaxBufferedChars: 4_000 });
    await api(harness, 'POST', '/api/2.0/serving-endpoints', { ...createBody('hotel', '1'), ai_gateway: { inference_table_config: INFERENCE_TABLE } });
    await waitForEndpoint(harness, 'hotel', isReady);
    const large = { dataframe_records: Array.from({ length: 60 }, (_, i) => ({ lead_time: i, note: 'x'.repeat(20) })) };
    expect(JSON.stringify(large).length).toBeGreaterThan(2_000);

    // Half the limit starts a flush without waiting for the ten-minute interval of the harness.
    expect((await invoke(harness, 'hotel', large)).status).toBe(200);
    const catalog = new LocalCatalog(harness.catalogRoot);
    await waitForCondition(() => catalog.latest(PAYLOAD_TABLE) !== undefined, 20_000);
    expect(catalog.latest(PAYLOAD_TABLE)).toMatchObject({ version: 1, rowCount: 1 });
  });

  test('payload text beyond the limit drops rows', async () => {
    const harness = await newHarness({ payloadMaxBufferedChars: 1_000 });
    await api(harness, 'POST', '/api/2.0/serving-endpoints', { ...createBody('hotel', '1'), ai_gateway: { inference_table_config: INFERENCE_TABLE } });
    await waitForEndpoint(harness, 'hotel', isReady);
    // A file where the catalog folder belongs makes every flush fail, so the rows stay buffered.
    fs.mkdirSync(harness.catalogRoot, { recursive: true });
    fs.writeFileSync(path.join(harness.catalogRoot, 'mlops_dev'), 'not a folder');
    const large = { dataframe_records: Array.from({ length: 20 }, (_, i) => ({ lead_time: i, note: 'x'.repeat(20) })) };

    for (let i = 0; i < 4; i += 1) expect((await invoke(harness, 'hotel', large)).status).toBe(200);
    await harness.plane.flushPayloads();
    const metrics = await api(harness, 'GET', '/api/2.0/serving-endpoints/hotel/metrics');
    expect(sampleValue(metrics.text, 'serving_payload_rows_dropped_total', { endpoint: 'hotel' })).toBeGreaterThanOrEqual(2);
    expect(logEntries(harness, 'inference table buffer full, dropped the oldest rows')[0]).toMatchObject({ maxBufferedChars: 1_000 });
  });

  test('interval flush writes rows', async () => {
    const harness = await newHarness({ payloadFlushIntervalMs: 100 });
    await api(harness, 'POST', '/api/2.0/serving-endpoints', { ...createBody('hotel', '1'), ai_gateway: { inference_table_config: INFERENCE_TABLE } });
    await waitForEndpoint(harness, 'hotel', isReady);
    await invoke(harness, 'hotel');

    const catalog = new LocalCatalog(harness.catalogRoot);
    await waitForCondition(() => catalog.latest(PAYLOAD_TABLE) !== undefined);
    expect(catalog.latest(PAYLOAD_TABLE)).toMatchObject({ version: 1, rowCount: 1 });
  });

  test('delete and close flush rows', async () => {
    const harness = await newHarness();
    const other = { ...INFERENCE_TABLE, table_name_prefix: 'other' };
    await api(harness, 'POST', '/api/2.0/serving-endpoints', { ...createBody('hotel', '1'), ai_gateway: { inference_table_config: INFERENCE_TABLE } });
    await api(harness, 'POST', '/api/2.0/serving-endpoints', { ...createBody('other', '1'), ai_gateway: { inference_table_config: other } });
    await waitForEndpoint(harness, 'hotel', isReady);
    await waitForEndpoint(harness, 'other', isReady);
    await invoke(harness, 'hotel');

    const catalog = new LocalCatalog(harness.catalogRoot);
    await api(harness, 'DELETE', '/api/2.0/serving-endpoints/hotel');
    expect(catalog.latest(PAYLOAD_TABLE)).toMatchObject({ version: 1, rowCount: 1 });

    await invoke(harness, 'other');
    await harness.plane.close();
    expect(catalog.latest({ ...PAYLOAD_TABLE, name: 'other_payload' })).toMatchObject({ version: 1, rowCount: 1 });
  });

  test('disabled table logs nothing', async () => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', {
      ...createBody('hotel', '1'),
      ai_gateway: { inference_table_config: { ...INFERENCE_TABLE, enabled: false } },
    });
    await waitForEndpoint(harness, 'hotel', isReady);
    await invoke(harness, 'hotel');
    await harness.plane.flushPayloads();
    expect(new LocalCatalog(harness.catalogRoot).latest(PAYLOAD_TABLE)).toBeUndefined();
  });

  test('1000 buffered rows start a flush', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'serving-features-test-'));
    tempDirs.push(dir);
    const writer = new InferenceTableWriter({
      catalogRoot: dir,
      logger: pino({ level: 'silent' }),
      metrics: new ServingMetrics(() => []),
      flushIntervalMs: 600_000,
    });
    try {
      const row = (i: number): PayloadRow => ({
        databricksRequestId: `request-${i}`,
        timestampMs: Date.UTC(2024, 0, 31, 23, 59, 59),
        statusCode: 200,
        executionTimeMs: 3,
        request: '{"inputs":[1]}',
        response: Buffer.from('{"predictions":[0]}'),
        endpointName: 'hotel',
      });
      for (let i = 0; i < 999; i += 1) writer.append(PAYLOAD_TABLE, row(i));
      await new Promise((resolve) => setTimeout(resolve, 100));
      const catalog = new LocalCatalog(dir);
      expect(catalog.latest(PAYLOAD_TABLE)).toBeUndefined();

      writer.append(PAYLOAD_TABLE, row(999));
      await waitForCondition(() => catalog.latest(PAYLOAD_TABLE) !== undefined, 20_000);
      expect(catalog.latest(PAYLOAD_TABLE)).toMatchObject({ version: 1, rowCount: 1000 });
      const [summary] = await queryRows(
        `SELECT count(*)::INTEGER AS n, min(date)::VARCHAR AS day, min(response) AS response FROM read_parquet('${catalog.snapshotPath({ ...PAYLOAD_TABLE, version: 1 })}')`,
      );
      expect(summary).toEqual({ n: 1000, day: '2024-01-31', response: '{"predictions":[0]}' });
    } finally {
      await writer.close();
    }
  });
});

describe('AI gateway API', () => {
  test('PUT returns, GET echoes and restart keeps it', async () => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'));
    await waitForEndpoint(harness, 'hotel', isReady);
    expect((await getEndpoint(harness, 'hotel')).body.ai_gateway).toBeUndefined();

    const put = await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/ai-gateway', { inference_table_config: INFERENCE_TABLE });
    expect(put.status).toBe(200);
    expect(put.body).toEqual({ inference_table_config: INFERENCE_TABLE });
    expect((await getEndpoint(harness, 'hotel')).body.ai_gateway).toEqual({ inference_table_config: INFERENCE_TABLE });
    const stored = JSON.parse(fs.readFileSync(servingStateFile(harness.stateDir), 'utf8')) as Json;
    expect(stored.endpoints[0].ai_gateway).toEqual({ inference_table_config: INFERENCE_TABLE });

    await harness.plane.close();
    const restarted = await newHarness({}, harness.stateDir);
    expect((await getEndpoint(restarted, 'hotel')).body.ai_gateway).toEqual({ inference_table_config: INFERENCE_TABLE });
    await waitForEndpoint(restarted, 'hotel', isReady);
    const response = await invoke(restarted, 'hotel');
    await restarted.plane.flushPayloads();
    const rows = await snapshotRows(restarted.catalogRoot, 1);
    expect(rows.map((row) => row.databricks_request_id)).toEqual([response.headers['x-request-id']]);
  });

  test('prefix defaults to the endpoint name', async () => {
    const harness = await newHarness();
    const created = await api(harness, 'POST', '/api/2.0/serving-endpoints', {
      ...createBody('hotel-api', '1'),
      ai_gateway: { inference_table_config: { catalog_name: 'c', schema_name: 's', enabled: true } },
    });
    expect(created.status).toBe(200);
    expect(created.body.ai_gateway.inference_table_config).toEqual({ catalog_name: 'c', schema_name: 's', table_name_prefix: 'hotel-api', enabled: true });
  });

  const badGateways: Array<[string, unknown, string]> = [
    ['enabled without catalog', { inference_table_config: { schema_name: 's', enabled: true } }, 'Missing inference_table_config.catalog_name'],
    ['unsupported rate_limits', { rate_limits: [{ calls: 1 }] }, 'Unsupported rate_limits'],
    ['catalog with a slash', { inference_table_config: { ...INFERENCE_TABLE, catalog_name: '../x' } }, 'inference_table_config.catalog_name "../x"'],
    ['enabled not boolean', { inference_table_config: { ...INFERENCE_TABLE, enabled: 'yes' } }, 'inference_table_config.enabled'],
  ];

  test.each(badGateways)('PUT rejects %s', async (_case, body, expectedText) => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'));
    const response = await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/ai-gateway', body);
    expect(response.status).toBe(400);
    expect(response.body.error_code).toBe('INVALID_PARAMETER_VALUE');
    expect(response.body.message).toContain(expectedText);
  });

  test('enabled table changes only after disabling', async () => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', { ...createBody('hotel', '1'), ai_gateway: { inference_table_config: INFERENCE_TABLE } });
    const moved = { ...INFERENCE_TABLE, schema_name: 'elsewhere' };

    const rejected = await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/ai-gateway', { inference_table_config: moved });
    expect(rejected.status).toBe(400);
    expect(rejected.body.message).toContain('Disable it first');
    const disabled = await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/ai-gateway', {
      inference_table_config: { ...INFERENCE_TABLE, enabled: false },
    });
    expect(disabled.status).toBe(200);
    const accepted = await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/ai-gateway', { inference_table_config: moved });
    expect(accepted.status).toBe(200);
    expect((await getEndpoint(harness, 'hotel')).body.ai_gateway.inference_table_config.schema_name).toBe('elsewhere');
  });

  test('unknown endpoint returns 404', async () => {
    const harness = await newHarness();
    const response = await api(harness, 'PUT', '/api/2.0/serving-endpoints/missing/ai-gateway', { inference_table_config: INFERENCE_TABLE });
    expect(response.status).toBe(404);
    expect(response.body.error_code).toBe('RESOURCE_DOES_NOT_EXIST');
  });

  test('file without ai_gateway still loads', async () => {
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'serving-features-test-'));
    tempDirs.push(stateDir);
    fs.mkdirSync(path.dirname(servingStateFile(stateDir)), { recursive: true });
    const endpoint = {
      name: 'hotel',
      id: 'a'.repeat(32),
      creator: 'local',
      creation_timestamp: 1_700_000_000_000,
      last_updated_timestamp: 1_700_000_000_000,
      tags: [],
      config: {
        served_entities: [{ name: 'm-1', entity_name: MODEL, entity_version: '1', workload_size: 'Small', scale_to_zero_enabled: true }],
        traffic_config: { routes: [{ served_entity_name: 'm-1', traffic_percentage: 100 }] },
        config_version: 1,
      },
    };
    fs.writeFileSync(servingStateFile(stateDir), JSON.stringify({ format_version: 1, endpoints: [endpoint] }));

    const harness = await newHarness({}, stateDir);
    const restored = await waitForEndpoint(harness, 'hotel', isReady);
    expect(restored.ai_gateway).toBeUndefined();
    expect((await invoke(harness, 'hotel')).status).toBe(200);
  });
});

describe('fault injection', () => {
  const update = { served_entities: [{ entity_name: MODEL, entity_version: '2' }] };

  test('next updates get injected conflicts', async () => {
    const faults = new ServingFaults();
    const harness = await newHarness({ faults });
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'));
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('other', '1'));
    await waitForEndpoint(harness, 'hotel', isReady);
    await waitForEndpoint(harness, 'other', isReady);
    faults.rejectConfigUpdates('hotel', 2);

    for (let i = 0; i < 2; i += 1) {
      const conflict = await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', update);
      expect(conflict.status).toBe(409);
      expect(conflict.body.error_code).toBe('RESOURCE_CONFLICT');
      expect(conflict.body.message).toContain('currently updating');
    }
    expect((await getEndpoint(harness, 'hotel')).body.state.config_update).toBe('NOT_UPDATING');
    expect((await api(harness, 'PUT', '/api/2.0/serving-endpoints/other/config', update)).status).toBe(200);
    expect((await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', update)).status).toBe(200);

    const logs = logEntries(harness, 'injected config update conflict');
    expect(logs.map((entry) => entry.injectedConflictsLeft)).toEqual([1, 0]);
    expect(logs[0].endpoint).toBe('hotel');
  });

  test('Infinity rejects until clear', async () => {
    const faults = new ServingFaults();
    const harness = await newHarness({ faults });
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'));
    await waitForEndpoint(harness, 'hotel', isReady);
    faults.rejectConfigUpdates('hotel', Infinity);

    for (let i = 0; i < 3; i += 1) {
      expect((await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', update)).status).toBe(409);
    }
    faults.clear();
    expect((await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', update)).status).toBe(200);
  });

  test('invalid count is rejected', () => {
    const faults = new ServingFaults();
    expect(() => faults.rejectConfigUpdates('hotel', -1)).toThrow(RangeError);
    expect(() => faults.rejectConfigUpdates('hotel', 1.5)).toThrow(/expected a whole number/);
  });
});

describe('model server limit', () => {
  test('a create beyond the limit gets 429 and starts nothing', async () => {
    const harness = await newHarness({ maxModelServers: 2 });
    expect((await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('first', '1'))).status).toBe(200);
    expect((await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('second', '1'))).status).toBe(200);
    await waitForEndpoint(harness, 'second', isReady);

    const refused = await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('third', '1'));
    expect(refused.status).toBe(429);
    expect(refused.body.error_code).toBe('RESOURCE_EXHAUSTED');
    expect(refused.body.message).toContain('Endpoint third needs 1 more model server(s)');
    expect(refused.body.message).toContain('limit of 2');
    expect(refused.body.message).toContain('MLOPS_SERVING_MAX_MODEL_SERVERS');
    expect((await getEndpoint(harness, 'third')).status).toBe(404);
    expect(harness.launcher.running()).toHaveLength(2);
    expect(logEntries(harness, 'model server limit reached')[0]).toMatchObject({ endpoint: 'third', needed: 2, limit: 2 });

    // Deleting an endpoint frees its model server for another.
    expect((await api(harness, 'DELETE', '/api/2.0/serving-endpoints/first')).status).toBe(200);
    expect((await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('third', '1'))).status).toBe(200);
  });

  test('an update counts only the model servers it adds', async () => {
    const harness = await newHarness({ maxModelServers: 2 });
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1', { scale_to_zero_enabled: false }));
    await waitForEndpoint(harness, 'hotel', isReady);

    // Version 1 keeps its server and version 2 needs one more: 2 of 2.
    const staged = await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', twoEntityBody('hotel').config);
    expect(staged.status).toBe(200);
    await waitForEndpoint(harness, 'hotel', isReady);

    // A third entity would need a third server, while the traffic-only change reuses both.
    const three = {
      served_entities: [
        ...(twoEntityBody('hotel').config as Json).served_entities,
        { name: 'third', entity_name: MODEL, entity_version: '3', scale_to_zero_enabled: false },
      ],
      traffic_config: {
        routes: [
          { served_entity_name: 'champion', traffic_percentage: 90 },
          { served_entity_name: 'challenger', traffic_percentage: 0 },
          { served_entity_name: 'third', traffic_percentage: 10 },
        ],
      },
    };
    const refused = await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', three);
    expect(refused.status).toBe(429);
    expect((await getEndpoint(harness, 'hotel')).body.state.config_update).toBe('NOT_UPDATING');
    const shifted = twoEntityBody('hotel').config as Json;
    shifted.traffic_config.routes = [
      { served_entity_name: 'champion', traffic_percentage: 0 },
      { served_entity_name: 'challenger', traffic_percentage: 100 },
    ];
    expect((await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', shifted)).status).toBe(200);
  });

  test('an invalid limit is rejected', () => {
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'serving-features-test-'));
    tempDirs.push(stateDir);
    const options = { host: '127.0.0.1', port: 0, stateDir, trackingUri: 'http://127.0.0.1:1', logger: pino({ level: 'silent' }) };
    expect(() => createServingPlane({ ...options, launcher: new FakeLauncher(), maxModelServers: 0 })).toThrow(/Invalid maxModelServers 0/);
  });
});

describe('serving settings', () => {
  test('defaults match Databricks', () => {
    const settings = stackSettings({});
    expect(settings.servingScaleToZeroIdleSeconds).toBe(1800);
    expect(settings.servingPayloadFlushSeconds).toBe(10);
    expect(settings.servingMaxModelServers).toBe(16);
  });

  test('environment overrides are validated', () => {
    expect(stackSettings({ MLOPS_SERVING_SCALE_TO_ZERO_IDLE_SECONDS: '2.5' }).servingScaleToZeroIdleSeconds).toBe(2.5);
    expect(stackSettings({ MLOPS_SERVING_PAYLOAD_FLUSH_SECONDS: '1' }).servingPayloadFlushSeconds).toBe(1);
    expect(() => stackSettings({ MLOPS_SERVING_SCALE_TO_ZERO_IDLE_SECONDS: 'soon' })).toThrow(
      /Invalid MLOPS_SERVING_SCALE_TO_ZERO_IDLE_SECONDS="soon": expected a number of seconds greater than 0/,
    );
    expect(() => stackSettings({ MLOPS_SERVING_SCALE_TO_ZERO_IDLE_SECONDS: '0' })).toThrow(/greater than 0/);
    expect(() => stackSettings({ MLOPS_SERVING_PAYLOAD_FLUSH_SECONDS: '1e9' })).toThrow(/at most 86400/);
    expect(stackSettings({ MLOPS_SERVING_MAX_MODEL_SERVERS: '4' }).servingMaxModelServers).toBe(4);
    expect(() => stackSettings({ MLOPS_SERVING_MAX_MODEL_SERVERS: '2.5' })).toThrow(
      /Invalid MLOPS_SERVING_MAX_MODEL_SERVERS="2.5": expected a whole number from 1 to 1000/,
    );
  });

  test('plane rejects a zero idle time', () => {
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'serving-features-test-'));
    tempDirs.push(stateDir);
    const options = { host: '127.0.0.1', port: 0, stateDir, trackingUri: 'http://127.0.0.1:1', logger: pino({ level: 'silent' }) };
    expect(() => createServingPlane({ ...options, launcher: new FakeLauncher(), scaleToZeroIdleMs: 0 })).toThrow(/Invalid scaleToZeroIdleMs 0/);
  });
});
