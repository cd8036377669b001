import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import axios from 'axios';
import pino from 'pino';
import type { ModelServerHandle, ModelServerLauncher, ModelServerSpec } from '../../serving/model-server';
import { createServingPlane, servingStateFile, type ServingPlane } from '../../serving/server';
import { deployServingEndpoint, waitForEndpointReady, type DeployInput } from '../../activities/serving';
import { ServingClient, type ServingEndpoint } from '../../platform/serving/client';
import type { EndpointDeployment, ServingSpec } from '../../workflows/types';
import { quietActivityEnvironment } from '../helpers/fixtures';

/**
 * State machine tests of the serving plane over HTTP on 127.0.0.1, with a fake launcher whose model
 * servers are in-process HTTP servers. Real `mlflow models serve` runs only in the integration tests.
 * The tests use a listening server instead of Fastify inject(), because inject() loads the ESM-only
 * `cookie` package, which Jest cannot require on Node 20.
 */

interface FakeBehavior {
  /** Delay in ms before the fake server becomes ready. */
  startDelayMs?: number;
  /** The start waits for this promise, so a test decides when the server becomes ready. */
  gate?: Promise<void>;
  /** Makes start() reject with this message after the delay. */
  failWith?: string;
}

class FakeModelServer implements ModelServerHandle {
  stopped = false;
  invocations = 0;
  private exitCallbacks: Array<(code: number | null, signal: NodeJS.Signals | null) => void> = [];

  constructor(
    readonly spec: ModelServerSpec,
    private readonly server: http.Server,
    readonly url: string,
    readonly pid: number,
  ) {}

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.emitExit(null, 'SIGTERM');
  }

  /** Simulates a crash: the port closes and exit callbacks fire with code 1. */
  async crash(): Promise<void> {
    this.stopped = true;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.emitExit(1, null);
  }

  onExit(callback: (code: number | null, signal: NodeJS.Signals | null) => void): void {
    this.exitCallbacks.push(callback);
  }

  private emitExit(code: number | null, signal: NodeJS.Signals | null): void {
    for (const callback of this.exitCallbacks.splice(0)) callback(code, signal);
  }
}

class FakeLauncher implements ModelServerLauncher {
  /** Behavior per entity version. Versions without an entry start at once. */
  readonly behaviors = new Map<string, FakeBehavior>();
  readonly servers: FakeModelServer[] = [];
  startCalls = 0;
  private nextPid = 100_000;

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

    const server = http.createServer((request, response) => {
      if (request.url === '/ping') {
        response.writeHead(200).end();
        return;
      }
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        fake.invocations += 1;
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { dataframe_records?: unknown[] };
        const predictions = (body.dataframe_records ?? [null]).map(() => 0);
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ predictions, version: spec.entityVersion }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const fake = new FakeModelServer(spec, server, `http://127.0.0.1:${port}`, this.nextPid++);
    this.servers.push(fake);
    return fake;
  }

  running(): FakeModelServer[] {
    return this.servers.filter((server) => !server.stopped);
  }
}

/** A promise with its resolve function, to release a gated start from the test. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open = (): void => undefined;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}

const MODEL = 'mlops_dev.acikgozm.hotel_reservations_model_basic';

function createBody(name: string, version = '1', extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name, config: { served_entities: [{ entity_name: MODEL, entity_version: version, ...extra }] } };
}

const records = { dataframe_records: [{ lead_time: 10 }, { lead_time: 20 }] };

interface Harness {
  plane: ServingPlane;
  baseUrl: string;
  launcher: FakeLauncher;
  stateDir: string;
  logLines: string[];
}

const openPlanes: ServingPlane[] = [];
const tempDirs: string[] = [];

function newPlane(stateDir?: string, launcher = new FakeLauncher()): Omit<Harness, 'baseUrl'> {
  const dir = stateDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'serving-plane-test-'));
  if (!stateDir) tempDirs.push(dir);
  const logLines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => logLines.push(line) });
  const plane = createServingPlane({
    host: '127.0.0.1',
    port: 0,
    stateDir: dir,
    trackingUri: 'http://127.0.0.1:1',
    logger,
    launcher,
    drainTimeoutMs: 2_000,
  });
  openPlanes.push(plane);
  return { plane, launcher, stateDir: dir, logLines };
}

async function newHarness(stateDir?: string, launcher = new FakeLauncher()): Promise<Harness> {
  const harness = newPlane(stateDir, launcher);
  const baseUrl = await harness.plane.listen();
  return { ...harness, baseUrl };
}

afterEach(async () => {
  await Promise.all(openPlanes.splice(0).map((plane) => plane.close()));
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

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
  return { status: response.status, body: JSON.parse(response.data as string) as Json, headers: response.headers };
}

const getEndpoint = (harness: Harness, name: string) => api(harness, 'GET', `/api/2.0/serving-endpoints/${name}`);
const invoke = (harness: Harness, name: string, payload: unknown = records) =>
  api(harness, 'POST', `/serving-endpoints/${name}/invocations`, payload);

/** Polls the endpoint until `predicate` holds. Fails with the last state after `timeoutMs`. */
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

const isReady = (endpoint: Json) => endpoint.state?.ready === 'READY' && endpoint.state?.config_update === 'NOT_UPDATING';
const isUpdateFailed = (endpoint: Json) => endpoint.state?.config_update === 'UPDATE_FAILED';

describe('serving plane endpoint lifecycle', () => {
  test('health returns ok', async () => {
    const harness = await newHarness();
    const response = await api(harness, 'GET', '/health');
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ status: 'ok' });
  });

  test('create goes from NOT_READY to READY', async () => {
    const harness = await newHarness();
    const { launcher } = harness;
    const ready = gate();
    launcher.behaviors.set('3', { gate: ready.promise });

    const created = await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '3'));
    expect(created.status).toBe(200);
    expect(created.body.state).toEqual({ ready: 'NOT_READY', config_update: 'IN_PROGRESS' });
    expect(created.body.name).toBe('hotel');
    expect(created.body.creator).toBe('local');
    expect(created.body.id).toMatch(/^[0-9a-f]{32}$/);
    expect(created.body.endpoint_url).toMatch(/\/serving-endpoints\/hotel\/invocations$/);
    expect(created.body.config.config_version).toBe(1);
    expect(created.body.config.served_entities[0]).toMatchObject({
      name: 'hotel_reservations_model_basic-3',
      entity_name: MODEL,
      entity_version: '3',
      workload_size: 'Small',
      scale_to_zero_enabled: true,
      state: { deployment: 'DEPLOYMENT_CREATING' },
    });
    expect(created.body.config.traffic_config.routes).toEqual([
      { served_entity_name: 'hotel_reservations_model_basic-3', traffic_percentage: 100 },
    ]);
    expect(created.body.pending_config).toBeUndefined();

    const starting = await invoke(harness, 'hotel');
    expect(starting.status).toBe(503);
    expect(starting.body.error_code).toBe('TEMPORARILY_UNAVAILABLE');

    ready.open();
    const endpoint = await waitForEndpoint(harness, 'hotel', isReady);
    expect(endpoint.config.served_entities[0].state.deployment).toBe('DEPLOYMENT_READY');
    expect(endpoint.state_message).toBeUndefined();
    expect(endpoint.last_updated_timestamp).toBeGreaterThanOrEqual(endpoint.creation_timestamp);
    expect(launcher.servers[0].spec).toMatchObject({ endpoint: 'hotel', entityName: MODEL, entityVersion: '3', workers: 1 });
  });

  test('workload size sets worker count', async () => {
    const harness = await newHarness();
    const { launcher } = harness;
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('large', '1', { workload_size: 'Large', scale_to_zero_enabled: false }));
    const endpoint = await waitForEndpoint(harness, 'large', isReady);
    expect(launcher.servers[0].spec.workers).toBe(4);
    expect(endpoint.config.served_entities[0].scale_to_zero_enabled).toBe(false);
    expect(endpoint.config.served_entities[0].workload_size).toBe('Large');
  });

  test('invocation returns predictions and entity header', async () => {
    const harness = await newHarness();
    const { logLines } = harness;
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '2'));
    await waitForEndpoint(harness, 'hotel', isReady);

    const response = await invoke(harness, 'hotel');
    expect(response.status).toBe(200);
    expect(response.body.predictions).toEqual([0, 0]);
    expect(response.headers['served-model-name']).toBe('hotel_reservations_model_basic-2');

    const invocationLog = logLines.map((line) => JSON.parse(line) as Json).find((entry) => entry.msg === 'invocation');
    expect(invocationLog).toMatchObject({ endpoint: 'hotel', records: 2, status: 200, inputKey: 'dataframe_records' });
    expect(logLines.join('\n')).not.toContain('lead_time');
  });

  test('list returns endpoint summaries', async () => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('first', '1'));
    await api(harness, 'POST', '/api/2.0/serving-endpoints', { ...createBody('second', '2'), tags: [{ key: 'team', value: 'mlops' }] });

    const response = await api(harness, 'GET', '/api/2.0/serving-endpoints');
    expect(response.status).toBe(200);
    expect(response.body.endpoints.map((endpoint: Json) => endpoint.name)).toEqual(['first', 'second']);
    const second = response.body.endpoints[1];
    expect(second.config.served_entities).toEqual([
      { name: 'hotel_reservations_model_basic-2', entity_name: MODEL, entity_version: '2' },
    ]);
    expect(second.tags).toEqual([{ key: 'team', value: 'mlops' }]);
    expect(second.state.ready).toBeDefined();
    expect(typeof second.creation_timestamp).toBe('number');
  });

  test('duplicate create returns 409', async () => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel'));
    const duplicate = await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '2'));
    expect(duplicate.status).toBe(409);
    expect(duplicate.body.error_code).toBe('RESOURCE_ALREADY_EXISTS');
    expect(duplicate.body.message).toContain('hotel');
  });

  test('unknown endpoint returns 404 everywhere', async () => {
    const harness = await newHarness();
    const requests = [
      api(harness, 'GET', '/api/2.0/serving-endpoints/missing'),
      api(harness, 'PUT', '/api/2.0/serving-endpoints/missing/config', createBody('x').config),
      api(harness, 'DELETE', '/api/2.0/serving-endpoints/missing'),
      invoke(harness, 'missing'),
    ];
    for (const response of await Promise.all(requests)) {
      expect(response.status).toBe(404);
      expect(response.body.error_code).toBe('RESOURCE_DOES_NOT_EXIST');
      expect(response.body.message).toContain('"missing"');
    }
  });

  test('unknown route returns 404 JSON', async () => {
    const harness = await newHarness();
    const response = await api(harness, 'GET', '/api/2.0/no-such-api');
    expect(response.status).toBe(404);
    expect(response.body.error_code).toBe('ENDPOINT_NOT_FOUND');
  });

  test('delete stops servers and removes endpoint', async () => {
    const harness = await newHarness();
    const { launcher, stateDir } = harness;
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel'));
    await waitForEndpoint(harness, 'hotel', isReady);

    const deleted = await api(harness, 'DELETE', '/api/2.0/serving-endpoints/hotel');
    expect(deleted.status).toBe(200);
    expect(deleted.body).toEqual({});
    expect(launcher.running()).toHaveLength(0);
    expect((await getEndpoint(harness, 'hotel')).status).toBe(404);
    const stored = JSON.parse(fs.readFileSync(servingStateFile(stateDir), 'utf8')) as Json;
    expect(stored.endpoints).toEqual([]);
  });

  test('delete during start cancels the start', async () => {
    const harness = await newHarness();
    const { launcher } = harness;
    const never = gate();
    launcher.behaviors.set('1', { gate: never.promise });
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel'));

    const deleted = await api(harness, 'DELETE', '/api/2.0/serving-endpoints/hotel');
    expect(deleted.status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(launcher.running()).toHaveLength(0);
  });
});

describe('serving plane request validation', () => {
  const badCreates: Array<[string, unknown, string]> = [
    ['missing name', { config: createBody('x').config }, 'name'],
    ['name with a dot', createBody('bad.name'), 'name "bad.name"'],
    ['name too long', createBody('n'.repeat(64)), 'name'],
    ['empty served_entities', { name: 'x', config: { served_entities: [] } }, 'config.served_entities'],
    ['missing entity_name', { name: 'x', config: { served_entities: [{ entity_version: '1' }] } }, 'config.served_entities[0].entity_name'],
    ['missing entity_version', { name: 'x', config: { served_entities: [{ entity_name: MODEL }] } }, 'config.served_entities[0].entity_version'],
    ['zero entity_version', createBody('x', '0'), 'config.served_entities[0].entity_version "0"'],
    ['non-numeric entity_version', createBody('x', 'v2'), 'config.served_entities[0].entity_version "v2"'],
    ['numeric entity_version', { name: 'x', config: { served_entities: [{ entity_name: MODEL, entity_version: 3 }] } }, 'entity_version 3'],
    ['unknown workload_size', createBody('x', '1', { workload_size: 'Huge' }), 'config.served_entities[0].workload_size "Huge"'],
    [
      'duplicate served entity names',
      {
        name: 'x',
        config: {
          served_entities: [
            { entity_name: MODEL, entity_version: '1' },
            { entity_name: 'other.hotel_reservations_model_basic', entity_version: '1' },
          ],
          traffic_config: { routes: [{ served_entity_name: 'hotel_reservations_model_basic-1', traffic_percentage: 100 }] },
        },
      },
      'config.served_entities[1].name "hotel_reservations_model_basic-1"',
    ],
    [
      'two entities without traffic_config',
      {
        name: 'x',
        config: {
          served_entities: [
            { name: 'a', entity_name: MODEL, entity_version: '1' },
            { name: 'b', entity_name: MODEL, entity_version: '2' },
          ],
        },
      },
      'config.traffic_config',
    ],
    [
      'route to unknown entity',
      {
        name: 'x',
        config: {
          served_entities: [{ name: 'a', entity_name: MODEL, entity_version: '1' }],
          traffic_config: { routes: [{ served_entity_name: 'b', traffic_percentage: 100 }] },
        },
      },
      'config.traffic_config.routes[0].served_entity_name "b"',
    ],
    [
      'routes not summing to 100',
      {
        name: 'x',
        config: {
          served_entities: [
            { name: 'a', entity_name: MODEL, entity_version: '1' },
            { name: 'b', entity_name: MODEL, entity_version: '2' },
          ],
          traffic_config: {
            routes: [
              { served_entity_name: 'a', traffic_percentage: 50 },
              { served_entity_name: 'b', traffic_percentage: 40 },
            ],
          },
        },
      },
      'sum to 90',
    ],
    ['body not an object', [1, 2], 'request body'],
  ];

  test.each(badCreates)('create rejects %s', async (_case, body, expectedText) => {
    const harness = await newHarness();
    const response = await api(harness, 'POST', '/api/2.0/serving-endpoints', body);
    expect(response.status).toBe(400);
    expect(response.body.error_code).toBe('INVALID_PARAMETER_VALUE');
    expect(response.body.message).toContain(expectedText);
  });

  test('update config rejects invalid routes', async () => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel'));
    await waitForEndpoint(harness, 'hotel', isReady);

    const response = await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', {
      served_entities: [{ name: 'a', entity_name: MODEL, entity_version: '2' }],
      traffic_config: { routes: [{ served_entity_name: 'a', traffic_percentage: 101 }] },
    });
    expect(response.status).toBe(400);
    expect(response.body.error_code).toBe('INVALID_PARAMETER_VALUE');
    expect(response.body.message).toContain('traffic_config.routes[0].traffic_percentage 101');
  });

  const badInvocations: Array<[string, unknown, string]> = [
    ['two input keys', { dataframe_records: [], instances: [] }, 'dataframe_records and instances'],
    ['no input key', { params: {} }, 'none of them'],
    ['unknown extra field', { inputs: [[1]], extra: 1 }, 'extra'],
    ['array body', [{ a: 1 }], 'an array'],
  ];

  test.each(badInvocations)('invocation rejects %s', async (_case, body, expectedText) => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel'));
    await waitForEndpoint(harness, 'hotel', isReady);

    const response = await invoke(harness, 'hotel', body);
    expect(response.status).toBe(400);
    expect(response.body.error_code).toBe('BAD_REQUEST');
    expect(response.body.message).toContain(expectedText);
  });

  test('invocation rejects invalid JSON', async () => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel'));
    const response = await axios.post(`${harness.baseUrl}/serving-endpoints/hotel/invocations`, '{"inputs": [', {
      headers: { 'content-type': 'application/json' },
      validateStatus: () => true,
      proxy: false,
    });
    expect(response.status).toBe(400);
    expect((response.data as Json).error_code).toBe('BAD_REQUEST');
  });
});

describe('serving plane config updates', () => {
  const updateTo = (version: string, extra: Record<string, unknown> = {}) => ({
    served_entities: [{ entity_name: MODEL, entity_version: version, ...extra }],
  });

  test('update during creation returns 409 RESOURCE_CONFLICT', async () => {
    const harness = await newHarness();
    const { launcher } = harness;
    const ready = gate();
    launcher.behaviors.set('1', { gate: ready.promise });
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel'));

    const conflict = await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', updateTo('2'));
    expect(conflict.status).toBe(409);
    expect(conflict.body.error_code).toBe('RESOURCE_CONFLICT');
    expect(conflict.body.message).toContain('Endpoint hotel is currently updating its served entities');
    ready.open();
  });

  test('zero-downtime update swaps to the new entity', async () => {
    const harness = await newHarness();
    const { launcher, stateDir } = harness;
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'));
    await waitForEndpoint(harness, 'hotel', isReady);
    const release = gate();
    launcher.behaviors.set('2', { gate: release.promise });

    const accepted = await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', updateTo('2'));
    expect(accepted.status).toBe(200);
    expect(accepted.body.state).toEqual({ ready: 'READY', config_update: 'IN_PROGRESS' });
    expect(accepted.body.config.config_version).toBe(1);
    expect(accepted.body.pending_config.config_version).toBe(2);
    expect(typeof accepted.body.pending_config.start_time).toBe('number');
    expect(accepted.body.pending_config.served_entities[0].name).toBe('hotel_reservations_model_basic-2');

    const conflict = await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', updateTo('3'));
    expect(conflict.status).toBe(409);
    expect(conflict.body.error_code).toBe('RESOURCE_CONFLICT');

    const duringUpdate = await invoke(harness, 'hotel');
    expect(duringUpdate.status).toBe(200);
    expect(duringUpdate.headers['served-model-name']).toBe('hotel_reservations_model_basic-1');
    const storedDuring = JSON.parse(fs.readFileSync(servingStateFile(stateDir), 'utf8')) as Json;
    expect(storedDuring.endpoints[0].pending_config.config_version).toBe(2);

    release.open();
    const updated = await waitForEndpoint(harness, 'hotel', isReady);
    expect(updated.config.config_version).toBe(2);
    expect(updated.pending_config).toBeUndefined();

    const afterSwap = await invoke(harness, 'hotel');
    expect(afterSwap.status).toBe(200);
    expect(afterSwap.headers['served-model-name']).toBe('hotel_reservations_model_basic-2');
    expect(afterSwap.body.version).toBe('2');

    const oldServer = launcher.servers.find((server) => server.spec.entityVersion === '1');
    await waitForCondition(() => oldServer?.stopped === true);
    const storedAfter = JSON.parse(fs.readFileSync(servingStateFile(stateDir), 'utf8')) as Json;
    expect(storedAfter.endpoints[0].config.config_version).toBe(2);
    expect(storedAfter.endpoints[0].pending_config).toBeUndefined();
  });

  test('failing new version keeps old version serving', async () => {
    const harness = await newHarness();
    const { launcher } = harness;
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'));
    await waitForEndpoint(harness, 'hotel', isReady);
    launcher.behaviors.set('2', { startDelayMs: 30, failWith: 'model server exited with code 1: RESOURCE_DOES_NOT_EXIST' });

    const accepted = await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', updateTo('2'));
    expect(accepted.status).toBe(200);

    const failed = await waitForEndpoint(harness, 'hotel', isUpdateFailed);
    expect(failed.state.ready).toBe('READY');
    expect(failed.config.config_version).toBe(1);
    expect(failed.pending_config).toBeUndefined();
    expect(failed.state_message).toContain('config version 2 failed');
    expect(failed.state_message).toContain('RESOURCE_DOES_NOT_EXIST');

    const response = await invoke(harness, 'hotel');
    expect(response.status).toBe(200);
    expect(response.headers['served-model-name']).toBe('hotel_reservations_model_basic-1');

    // After a failure the endpoint accepts the next update.
    const retry = await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', updateTo('3'));
    expect(retry.status).toBe(200);
    const updated = await waitForEndpoint(harness, 'hotel', isReady);
    expect(updated.config.config_version).toBe(2);
    expect(updated.config.served_entities[0].entity_version).toBe('3');
  });

  test('failing second entity stops the first new one', async () => {
    const harness = await newHarness();
    const { launcher } = harness;
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'));
    await waitForEndpoint(harness, 'hotel', isReady);
    launcher.behaviors.set('3', { startDelayMs: 50, failWith: 'boom' });

    await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', {
      served_entities: [
        { name: 'two', entity_name: MODEL, entity_version: '2' },
        { name: 'three', entity_name: MODEL, entity_version: '3' },
      ],
      traffic_config: {
        routes: [
          { served_entity_name: 'two', traffic_percentage: 50 },
          { served_entity_name: 'three', traffic_percentage: 50 },
        ],
      },
    });
    await waitForEndpoint(harness, 'hotel', isUpdateFailed);
    await waitForCondition(() => launcher.running().length === 1);
    expect(launcher.running()[0].spec.entityVersion).toBe('1');
  });

  test('failed creation reports UPDATE_FAILED', async () => {
    const harness = await newHarness();
    const { launcher } = harness;
    launcher.behaviors.set('1', { failWith: 'model version not found' });
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'));

    const failed = await waitForEndpoint(harness, 'hotel', isUpdateFailed);
    expect(failed.state.ready).toBe('NOT_READY');
    expect(failed.config.served_entities[0].state.deployment).toBe('DEPLOYMENT_FAILED');
    expect(failed.config.served_entities[0].state.deployment_state_message).toContain('model version not found');
    const response = await invoke(harness, 'hotel');
    expect(response.status).toBe(503);
    expect(response.body.error_code).toBe('TEMPORARILY_UNAVAILABLE');

    // A config update with a working version repairs the endpoint.
    await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', updateTo('2'));
    const repaired = await waitForEndpoint(harness, 'hotel', isReady);
    expect(repaired.config.config_version).toBe(2);
  });

  test('unchanged entity reuses its model server', async () => {
    const harness = await newHarness();
    const { launcher } = harness;
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'));
    await waitForEndpoint(harness, 'hotel', isReady);

    await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', {
      served_entities: [{ name: 'renamed', entity_name: MODEL, entity_version: '1', scale_to_zero_enabled: false }],
    });
    const updated = await waitForEndpoint(harness, 'hotel', isReady);
    expect(updated.config.config_version).toBe(2);
    expect(launcher.startCalls).toBe(1);
    expect(launcher.running()).toHaveLength(1);
    const response = await invoke(harness, 'hotel');
    expect(response.headers['served-model-name']).toBe('renamed');
  });

  test('traffic goes only to routed entities', async () => {
    const harness = await newHarness();
    await api(harness, 'POST', '/api/2.0/serving-endpoints', {
      name: 'split',
      config: {
        served_entities: [
          { name: 'champion', entity_name: MODEL, entity_version: '1' },
          { name: 'challenger', entity_name: MODEL, entity_version: '2' },
        ],
        traffic_config: {
          routes: [
            { served_entity_name: 'champion', traffic_percentage: 100 },
            { served_entity_name: 'challenger', traffic_percentage: 0 },
          ],
        },
      },
    });
    await waitForEndpoint(harness, 'split', isReady);
    for (let i = 0; i < 10; i += 1) {
      const response = await invoke(harness, 'split');
      expect(response.headers['served-model-name']).toBe('champion');
    }
  });

  test('crashed model server is restarted', async () => {
    const harness = await newHarness();
    const { launcher } = harness;
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'));
    await waitForEndpoint(harness, 'hotel', isReady);

    await launcher.servers[0].crash();
    await waitForCondition(() => launcher.running().length === 1 && launcher.servers.length === 2);
    const endpoint = await waitForEndpoint(harness, 'hotel', isReady);
    expect(endpoint.config.served_entities[0].state.deployment).toBe('DEPLOYMENT_READY');
    expect(endpoint.config.served_entities[0].state.deployment_state_message).toContain('restarted by the serving plane');
    expect(endpoint.config.served_entities[0].state.deployment_state_message).not.toContain('scale to zero');
    const response = await invoke(harness, 'hotel');
    expect(response.status).toBe(200);
    expect(launcher.servers[1].invocations).toBe(1);
  });

  test('crash during an update is restarted', async () => {
    const harness = await newHarness();
    const { launcher } = harness;
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1', { scale_to_zero_enabled: false }));
    await waitForEndpoint(harness, 'hotel', isReady);
    const started = gate();
    launcher.behaviors.set('2', { gate: started.promise });

    // The update keeps version 1 next to the new version 2, so both configs share its server.
    const staged = {
      served_entities: [
        { name: 'current', entity_name: MODEL, entity_version: '1', scale_to_zero_enabled: false },
        { name: 'next', entity_name: MODEL, entity_version: '2', scale_to_zero_enabled: false },
      ],
      traffic_config: {
        routes: [
          { served_entity_name: 'current', traffic_percentage: 100 },
          { served_entity_name: 'next', traffic_percentage: 0 },
        ],
      },
    };
    expect((await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', staged)).status).toBe(200);
    await launcher.servers[0].crash();

    // Version 1 comes back while version 2 is still starting, and invocations keep succeeding.
    expect((await invoke(harness, 'hotel')).status).toBe(200);
    started.open();
    const endpoint = await waitForEndpoint(harness, 'hotel', isReady);
    expect(endpoint.state).toEqual({ ready: 'READY', config_update: 'NOT_UPDATING' });
    expect(endpoint.config.served_entities.map((entity: { entity_version: string }) => entity.entity_version)).toEqual(['1', '2']);
    expect((await invoke(harness, 'hotel')).status).toBe(200);
    // The crashed version 1 server, its restart and version 2: the update started no server of its own for version 1.
    expect(launcher.servers.map((server) => server.spec.entityVersion)).toEqual(['1', '1', '2']);
  });

  test('model server crashing repeatedly is marked failed', async () => {
    const harness = await newHarness();
    const { launcher } = harness;
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'));
    await waitForEndpoint(harness, 'hotel', isReady);

    // Three crashes are restarted; the fourth within ten minutes is not.
    for (let crash = 1; crash <= 4; crash += 1) {
      await waitForCondition(() => launcher.running().length === 1);
      await launcher.running()[0].crash();
    }
    const endpoint = await waitForEndpoint(harness, 'hotel', (e) => e.state.ready === 'NOT_READY');
    expect(launcher.servers).toHaveLength(4);
    expect(endpoint.config.served_entities[0].state.deployment).toBe('DEPLOYMENT_FAILED');
    expect(endpoint.state_message).toContain('exited unexpectedly with code 1');
    expect(endpoint.state_message).toContain('crashed 4 times within 10 minutes');
    const response = await invoke(harness, 'hotel');
    expect(response.status).toBe(503);
    expect(response.body.message).not.toContain('Retry when');
    expect(response.body.message).not.toContain('..');

    // A config update with the same version starts a new server.
    const again = await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', { served_entities: [{ entity_name: MODEL, entity_version: '1' }] });
    expect(again.status).toBe(200);
    await waitForEndpoint(harness, 'hotel', isReady);
    expect((await invoke(harness, 'hotel')).status).toBe(200);
  });

  test('unreachable model server returns 503', async () => {
    const harness = await newHarness();
    const { launcher } = harness;
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'));
    await waitForEndpoint(harness, 'hotel', isReady);
    // Close the port without reporting an exit, as if the process hung up its socket.
    const server = launcher.servers[0] as unknown as { server: http.Server };
    server.server.closeAllConnections();
    await new Promise<void>((resolve) => server.server.close(() => resolve()));

    const response = await invoke(harness, 'hotel');
    expect(response.status).toBe(503);
    expect(response.body.error_code).toBe('TEMPORARILY_UNAVAILABLE');
    expect(response.body.message).toContain('unreachable');
  });
});

describe('serving plane persistence', () => {
  test('restart restores endpoint and becomes READY', async () => {
    const first = await newHarness();
    const created = await api(first, 'POST', '/api/2.0/serving-endpoints', { ...createBody('hotel', '4'), tags: [{ key: 'owner', value: 'ml' }] });
    await waitForEndpoint(first, 'hotel', isReady);
    await first.plane.close();
    expect(first.launcher.running()).toHaveLength(0);

    const launcher = new FakeLauncher();
    const ready = gate();
    launcher.behaviors.set('4', { gate: ready.promise });
    const second = await newHarness(first.stateDir, launcher);
    const restoring = await getEndpoint(second, 'hotel');
    expect(restoring.status).toBe(200);
    expect(restoring.body.state).toEqual({ ready: 'NOT_READY', config_update: 'IN_PROGRESS' });

    ready.open();
    const restored = await waitForEndpoint(second, 'hotel', isReady);
    expect(restored.id).toBe(created.body.id);
    expect(restored.creation_timestamp).toBe(created.body.creation_timestamp);
    expect(restored.tags).toEqual([{ key: 'owner', value: 'ml' }]);
    expect(restored.config.served_entities[0].entity_version).toBe('4');
    const response = await invoke(second, 'hotel');
    expect(response.status).toBe(200);
  });

  test('restart drops interrupted update as UPDATE_FAILED', async () => {
    const first = await newHarness();
    await api(first, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'));
    await waitForEndpoint(first, 'hotel', isReady);
    first.launcher.behaviors.set('2', { gate: gate().promise });
    await api(first, 'PUT', '/api/2.0/serving-endpoints/hotel/config', {
      served_entities: [{ entity_name: MODEL, entity_version: '2' }],
    });
    await first.plane.close();
    expect(first.launcher.running()).toHaveLength(0);

    const second = await newHarness(first.stateDir);
    const restored = await waitForEndpoint(second, 'hotel', isUpdateFailed);
    expect(restored.state.ready).toBe('READY');
    expect(restored.config.config_version).toBe(1);
    expect(restored.pending_config).toBeUndefined();
    expect(restored.state_message).toContain('config version 2');
    expect(restored.state_message).toContain('interrupted');
    expect(second.launcher.servers.map((server) => server.spec.entityVersion)).toEqual(['1']);
  });

  test('state file write leaves no temp file', async () => {
    const harness = await newHarness();
    const { stateDir } = harness;
    await api(harness, 'POST', '/api/2.0/serving-endpoints', createBody('hotel', '1'));
    const folder = path.dirname(servingStateFile(stateDir));
    expect(fs.readdirSync(folder)).toEqual(['endpoints.json']);
    const stored = JSON.parse(fs.readFileSync(servingStateFile(stateDir), 'utf8')) as Json;
    expect(stored.format_version).toBe(1);
    expect(stored.endpoints[0]).toMatchObject({ name: 'hotel', config: { config_version: 1 } });
  });

  test('invalid state file fails plane creation', () => {
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'serving-plane-test-'));
    tempDirs.push(stateDir);
    fs.mkdirSync(path.join(stateDir, 'serving'));
    fs.writeFileSync(servingStateFile(stateDir), '{"endpoints": [');
    expect(() => newPlane(stateDir)).toThrow(/Invalid endpoint file .*endpoints\.json.*move it away/);
  });
});

async function waitForCondition(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Condition still false after ${timeoutMs} ms.`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('deploy activities on a stale state', () => {
  const serving: ServingSpec = {
    endpoint: 'hotel',
    workloadSize: 'Small',
    scaleToZeroEnabled: true,
    readyTimeoutSeconds: 30,
    pollIntervalSeconds: 0.05,
    conflictRetry: { maximumAttempts: 3, intervalSeconds: 1 },
  };
  const input: DeployInput = { serving, modelName: MODEL, version: '1' };

  async function deployAndWait(client: ServingClient) {
    const environment = quietActivityEnvironment();
    const deployment: EndpointDeployment = await environment.run(deployServingEndpoint, client, input);
    const endpoint: ServingEndpoint = await environment.run(waitForEndpointReady, client, input);
    return { deployment, endpoint };
  }

  test('served version after a failed update', async () => {
    const harness = await newHarness();
    harness.launcher.behaviors.set('2', { failWith: 'model version 2 does not load' });
    const client = new ServingClient(harness.baseUrl);
    await deployAndWait(client);
    await api(harness, 'PUT', '/api/2.0/serving-endpoints/hotel/config', { served_entities: [{ entity_name: MODEL, entity_version: '2' }] });
    await waitForEndpoint(harness, 'hotel', (e) => e.state.config_update === 'UPDATE_FAILED');

    // Version 1 still serves, so the deploy sends nothing and the wait ends at once.
    const { deployment, endpoint } = await deployAndWait(client);
    expect(deployment.unchanged).toBe(true);
    expect(endpoint.state).toEqual({ ready: 'READY', config_update: 'UPDATE_FAILED' });
  });

  test('lost model server is started again', async () => {
    const harness = await newHarness();
    const { launcher } = harness;
    const client = new ServingClient(harness.baseUrl);
    await deployAndWait(client);
    for (let crash = 1; crash <= 4; crash += 1) {
      await waitForCondition(() => launcher.running().length === 1);
      await launcher.running()[0].crash();
    }
    await waitForEndpoint(harness, 'hotel', (e) => e.state.ready === 'NOT_READY');

    // The config is the target, but nothing serves it, so the deploy sends it again.
    const { deployment, endpoint } = await deployAndWait(client);
    expect(deployment.unchanged).toBe(false);
    expect(endpoint.state).toEqual({ ready: 'READY', config_update: 'NOT_UPDATING' });
    expect((await invoke(harness, 'hotel')).status).toBe(200);
  });
});
