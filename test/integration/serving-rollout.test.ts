import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure } from '@temporalio/common';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { openDuckDB } from '../../activities/ingestion';
import { createActivities } from '../../activities';
import { EndpointPoller } from '../../client/endpoint-poller';
import { createLogger } from '../../common/logger';
import { REPO_ROOT } from '../../common/paths';
import { catalogDir, mlflowUrl, temporalAddress } from '../../config/stack';
import { LocalCatalog } from '../../platform/catalog/local';
import { ServingClient } from '../../platform/serving/client';
import { ServingFaults } from '../../serving/faults';
import { createServingPlane, type ServingPlane } from '../../serving/server';
import { deleteEndpoint, deployModelVersion } from '../../workflows';
import type { DeployModelVersionInput } from '../../workflows/deploy';
import { servedEntityName } from '../../workflows/serving-config';
import type { ServingSpec, TableRef } from '../../workflows/types';
import { registerFixtureModels, type FixtureKind, type FixtureVersion } from '../helpers/fixture-models';
import { integrationSettings } from '../helpers/stack';

// Deployment workflows on the test stack's Temporal server and MLflow registry, against a serving
// plane this file starts with fault injection, serving real MLflow model servers of small fixture
// models. Tests run in order and share one endpoint, as a model's deployments would.

const settings = integrationSettings();
const MODEL = 'mlops_test.serving.rollout_fixture';
const ENDPOINT = 'rollout-test-serving';
const INPUTS = [
  'no_of_adults', 'no_of_children', 'no_of_weekend_nights', 'no_of_week_nights', 'required_car_parking_space', 'lead_time',
  'repeated_guest', 'no_of_previous_cancellations', 'no_of_previous_bookings_not_canceled', 'avg_price_per_room',
  'no_of_special_requests', 'type_of_meal_plan', 'room_type_reserved', 'market_segment_type',
];

let plane: ServingPlane;
let planeUrl: string;
let serving: ServingClient;
const faults = new ServingFaults();
let connection: NativeConnection;
let client: Client;
let worker: Worker;
let workerRun: Promise<void>;
let stateDir: string;
let testTable: TableRef;
const versions = new Map<FixtureKind, string>();
const TASK_QUEUE = `serving-rollout-${process.pid}`;

const baseServing: ServingSpec = {
  endpoint: ENDPOINT,
  workloadSize: 'Small',
  scaleToZeroEnabled: false,
  readyTimeoutSeconds: 120,
  pollIntervalSeconds: 0.5,
  conflictRetry: { maximumAttempts: 4, intervalSeconds: 1 },
  deployAlias: 'champion',
  inferenceTable: { catalog: 'mlops_test', schema: 'serving' },
  smokeTest: { records: 5, requests: 2, maxLatencyMs: 5000 },
  rollout: { strategy: 'direct' },
};

/** Writes a small test table with the booking columns, for the smoke test's records. */
async function writeTestTable(): Promise<TableRef> {
  const catalog = new LocalCatalog(catalogDir(settings));
  const table = { catalog: 'mlops_test', schema: 'serving', name: 'test_set' };
  const staged = catalog.stagingPath(table, 'fixture');
  const { instance, connection: duck } = await openDuckDB();
  try {
    await duck.run(`COPY (
      SELECT i::INTEGER AS booking_id, (1 + i % 3)::INTEGER AS no_of_adults, (i % 2)::INTEGER AS no_of_children,
        (i % 3)::INTEGER AS no_of_weekend_nights, (1 + i % 4)::INTEGER AS no_of_week_nights,
        (i % 2)::INTEGER AS required_car_parking_space, (i * 7 % 300)::INTEGER AS lead_time, 0::INTEGER AS repeated_guest,
        0::INTEGER AS no_of_previous_cancellations, 0::INTEGER AS no_of_previous_bookings_not_canceled,
        (80 + i)::DOUBLE AS avg_price_per_room, (i % 3)::INTEGER AS no_of_special_requests,
        'Meal Plan 1' AS type_of_meal_plan, 'Room_Type 1' AS room_type_reserved, 'Online' AS market_segment_type
      FROM range(30) t(i)) TO '${staged}' (FORMAT parquet)`);
  } finally {
    duck.closeSync();
    instance.closeSync();
  }
  return catalog.commit(table, staged, { rowCount: 30, sourceHash: `fixture-${Date.now()}` });
}

function input(kind: FixtureKind, servingOverrides: Partial<ServingSpec> = {}): DeployModelVersionInput {
  return {
    serving: { ...baseServing, ...servingOverrides },
    model: { name: MODEL, version: versions.get(kind)! },
    test: testTable,
    inputs: INPUTS,
    output: 'label',
  };
}

function deploy(kind: FixtureKind, servingOverrides: Partial<ServingSpec> = {}, taskQueue = TASK_QUEUE) {
  return client.workflow.execute(deployModelVersion, {
    taskQueue,
    workflowId: `rollout-${kind}-${Date.now()}`,
    args: [input(kind, servingOverrides)],
  });
}

/** Returns the failure a workflow run ended with: its type and message. */
async function failureOf(run: Promise<unknown>): Promise<{ type?: string; message: string }> {
  const error = await run.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(WorkflowFailedError);
  // A failure the workflow raised itself is the cause; an activity's failure is wrapped once more.
  let cause = (error as WorkflowFailedError).cause;
  if (cause instanceof ActivityFailure) cause = cause.cause;
  return { type: cause instanceof ApplicationFailure ? (cause.type ?? undefined) : undefined, message: cause?.message ?? '' };
}

/** Returns the model versions the endpoint's active config serves, with their traffic shares. */
async function served(): Promise<Record<string, number>> {
  const endpoint = await serving.get(ENDPOINT);
  const shares: Record<string, number> = {};
  for (const route of endpoint?.config?.traffic_config?.routes ?? []) {
    const entity = endpoint?.config?.served_entities.find((candidate) => candidate.name === route.served_entity_name);
    if (entity) shares[entity.entity_version] = route.traffic_percentage;
  }
  return shares;
}

/** Attempts of one activity type in a run's history. */
async function attemptsOf(workflowId: string, activityType: string): Promise<number> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const scheduled = new Set<number>();
  let attempts = 0;
  for (const event of history.events ?? []) {
    if (event.activityTaskScheduledEventAttributes?.activityType?.name === activityType) scheduled.add(Number(event.eventId));
    const started = event.activityTaskStartedEventAttributes;
    if (started && scheduled.has(Number(started.scheduledEventId))) attempts = Math.max(attempts, started.attempt ?? 1);
  }
  return attempts;
}

const poller = (): EndpointPoller =>
  new EndpointPoller(serving.invocationsUrl(ENDPOINT), { dataframe_records: [{ ...Object.fromEntries(INPUTS.map((name) => [name, name.includes('type') ? 'Online' : 1])) }] }, 20);

beforeAll(async () => {
  // Keep the worker's log lines out of the test output; failures still show through the assertions.
  Runtime.install({ logger: new DefaultLogger('ERROR', () => undefined) });
  stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rollout-plane-'));
  const kinds: FixtureKind[] = ['good', 'good_alt', 'bad_output', 'broken_start', 'flaky'];
  const registered: FixtureVersion[] = await registerFixtureModels(mlflowUrl(settings), MODEL, kinds, { errorShare: 0.5 });
  for (const version of registered) versions.set(version.kind, version.version);
  testTable = await writeTestTable();

  plane = createServingPlane({
    host: '127.0.0.1',
    port: 0,
    stateDir,
    trackingUri: mlflowUrl(settings),
    catalogRoot: catalogDir(settings),
    logger: createLogger('rollout-test-plane', { file: path.join(stateDir, 'plane.log') }),
    faults,
  });
  planeUrl = await plane.listen();
  serving = new ServingClient(planeUrl);

  connection = await NativeConnection.connect({ address: temporalAddress(settings) });
  client = new Client({ connection: await Connection.connect({ address: temporalAddress(settings) }) });
  worker = await Worker.create({
    connection,
    taskQueue: TASK_QUEUE,
    workflowsPath: require.resolve('../../workflows'),
    activities: createActivities({ ...settings, taskQueue: TASK_QUEUE }, { servingUrl: planeUrl }),
  });
  workerRun = worker.run();
}, 300_000);

afterAll(async () => {
  worker?.shutdown();
  await workerRun?.catch(() => undefined);
  await connection?.close();
  await client?.connection.close();
  await plane?.close();
  fs.rmSync(stateDir, { recursive: true, force: true });
}, 120_000);

describe('rolling out model versions to a serving endpoint', () => {
  it('creates the endpoint with the first version and smoke-tests it', async () => {
    const result = await deploy('good');
    expect(result.deployment.unchanged).toBe(false);
    expect(result.deployment.rollout).toMatchObject({ strategy: 'direct', previousVersions: [], servedEntity: servedEntityName(MODEL, versions.get('good')!) });
    expect(result.smokeTest.predictions).toHaveLength(5);
    expect(result.smokeTest.latenciesMs).toHaveLength(2);
    expect(await served()).toEqual({ [versions.get('good')!]: 100 });
  }, 180_000);

  it('sends no update when the endpoint already serves the version', async () => {
    const before = (await serving.get(ENDPOINT))?.config?.config_version;
    const result = await deploy('good');
    expect(result.deployment.unchanged).toBe(true);
    expect((await serving.get(ENDPOINT))?.config?.config_version).toBe(before);
  }, 120_000);

  it('retries 409 conflicts, then swaps versions with no failed request', async () => {
    faults.rejectConfigUpdates(ENDPOINT, 2);
    const workflowId = `rollout-conflicts-${Date.now()}`;
    const clientTraffic = poller();
    clientTraffic.start();
    let result;
    try {
      result = await client.workflow.execute(deployModelVersion, { taskQueue: TASK_QUEUE, workflowId, args: [input('good_alt')] });
    } finally {
      const report = await clientTraffic.stop();
      expect(report.failures).toEqual([]);
      expect(report.servedSequence.map((entry) => entry.servedEntity)).toEqual([
        servedEntityName(MODEL, versions.get('good')!),
        servedEntityName(MODEL, versions.get('good_alt')!),
      ]);
    }
    expect(await attemptsOf(workflowId, 'deployServingEndpoint')).toBe(3);
    expect(result.deployment.rollout?.previousVersions).toEqual([versions.get('good')]);
    expect(await served()).toEqual({ [versions.get('good_alt')!]: 100 });
  }, 180_000);

  it('fails loudly after endless conflicts', async () => {
    faults.rejectConfigUpdates(ENDPOINT, Infinity);
    try {
      const failure = await failureOf(deploy('good', { conflictRetry: { maximumAttempts: 3, intervalSeconds: 1 } }));
      expect(failure.type).toBe('EndpointBusy');
      expect(failure.message).toMatch(/still busy .* after 3 attempts 1 s apart/);
    } finally {
      faults.clear();
    }
    expect(await served()).toEqual({ [versions.get('good_alt')!]: 100 });
  }, 120_000);

  it('keeps the old version when the new cannot start', async () => {
    const failure = await failureOf(deploy('broken_start'));
    expect(failure.type).toBe('EndpointUpdateFailed');
    const endpoint = await serving.get(ENDPOINT);
    expect(endpoint?.state).toEqual({ ready: 'READY', config_update: 'UPDATE_FAILED' });
    expect(await served()).toEqual({ [versions.get('good_alt')!]: 100 });
    const answer = await serving.query(ENDPOINT, { dataframe_records: [{ lead_time: 5 }] });
    expect(answer.servedModel).toBe(servedEntityName(MODEL, versions.get('good_alt')!));
  }, 180_000);

  it('rolls back a failed smoke test unseen by clients', async () => {
    const clientTraffic = poller();
    clientTraffic.start();
    let failure;
    try {
      failure = await failureOf(deploy('bad_output'));
    } finally {
      // The new version waits with no traffic until it passes its smoke test, so clients only see the old one.
      const report = await clientTraffic.stop();
      expect(report.failures).toEqual([]);
      expect(report.servedSequence.map((entry) => entry.servedEntity)).toEqual([servedEntityName(MODEL, versions.get('good_alt')!)]);
    }
    expect(failure.type).toBe('SmokeTestFailed');
    expect(failure.message).toMatch(/expected 0 or 1/);
    expect(failure.message).toMatch(/Rolled back/);
    const endpoint = await serving.get(ENDPOINT);
    expect(endpoint?.state).toEqual({ ready: 'READY', config_update: 'NOT_UPDATING' });
    expect(await served()).toEqual({ [versions.get('good_alt')!]: 100 });
  }, 240_000);

  it('rolls back a canary whose error rate is too high', async () => {
    const clientTraffic = poller();
    clientTraffic.start();
    const canary = {
      trafficPercentage: 30,
      durationSeconds: 60,
      checkIntervalSeconds: 1,
      minRequests: 5,
      maxErrorRate: 0.2,
      maxP95LatencyMs: 5000,
      onInsufficientTraffic: 'rollback' as const,
    };
    let failure;
    try {
      // The flaky version serves its first request and fails every second one after that, so it
      // passes a one-request smoke test and the canary's error rate catches it.
      const smokeTest = { records: 5, requests: 1, maxLatencyMs: 5000 };
      failure = await failureOf(deploy('flaky', { rollout: { strategy: 'canary', canary }, smokeTest }));
    } finally {
      await clientTraffic.stop();
    }
    expect(failure.type).toBe('CanaryFailed');
    expect(failure.message).toMatch(/error rate .* is above the limit of 20.00%/);
    expect(failure.message).toMatch(/Rolled back/);
    expect(await served()).toEqual({ [versions.get('good_alt')!]: 100 });
  }, 240_000);

  it('promotes a healthy canary to all traffic with no failed client request', async () => {
    const clientTraffic = poller();
    clientTraffic.start();
    let result;
    try {
      result = await deploy('good', {
        rollout: {
          strategy: 'canary',
          canary: {
            trafficPercentage: 30,
            durationSeconds: 6,
            checkIntervalSeconds: 1,
            minRequests: 5,
            maxErrorRate: 0,
            maxP95LatencyMs: 5000,
            onInsufficientTraffic: 'rollback',
          },
        },
      });
    } finally {
      const report = await clientTraffic.stop();
      expect(report.failures).toEqual([]);
      const entities = new Set(report.servedSequence.map((entry) => entry.servedEntity));
      expect(entities).toEqual(new Set([servedEntityName(MODEL, versions.get('good_alt')!), servedEntityName(MODEL, versions.get('good')!)]));
    }
    expect(result.deployment.rollout?.strategy).toBe('canary');
    expect(result.deployment.rollout?.canary).toMatchObject({ verdict: 'promote', errors: 0 });
    expect(result.deployment.rollout?.canary?.requests).toBeGreaterThanOrEqual(5);
    expect(await served()).toEqual({ [versions.get('good')!]: 100 });
    // Staging, the canary split and the promotion are three config versions; the result names the last.
    expect(result.deployment.configVersion).toBe((await serving.get(ENDPOINT))?.config?.config_version);
  }, 240_000);

  it('logs the requests of the rollouts to the payload table', async () => {
    await plane.flushPayloads();
    const catalog = new LocalCatalog(catalogDir(settings));
    const table = { catalog: 'mlops_test', schema: 'serving', name: `${ENDPOINT.replace(/-/g, '_')}_payload` };
    const latest = catalog.latest(table);
    expect(latest?.operation).toBe('APPEND');
    const { instance, connection: duck } = await openDuckDB();
    try {
      const reader = await duck.runAndReadAll(
        `SELECT entity_version, count(*)::INTEGER AS n FROM read_parquet('${catalog.snapshotPath({ ...table, version: latest!.version })}') GROUP BY ALL`,
      );
      const counts = Object.fromEntries(reader.getRowObjectsJson().map((row) => [row.entity_version, row.n]));
      expect(counts[versions.get('good')!]).toBeGreaterThan(0);
      expect(counts[versions.get('good_alt')!]).toBeGreaterThan(0);
    } finally {
      duck.closeSync();
      instance.closeSync();
    }
  }, 60_000);

  it('survives a worker killed mid-deployment', async () => {
    const queue = `${TASK_QUEUE}-killed`;
    // Node itself runs the worker, with tsx as a loader. The tsx command would run it in a child
    // process, which survives a SIGKILL sent to tsx and keeps the activity running.
    const startWorker = (): ChildProcess =>
      spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'test', 'helpers', 'worker-process.ts')], {
        env: { ...process.env, TEST_TASK_QUEUE: queue, TEST_SERVING_URL: planeUrl, LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
    const ready = (child: ChildProcess): Promise<void> =>
      new Promise((resolve, reject) => {
        child.stdout?.on('data', (chunk: Buffer) => chunk.toString().includes('worker ready') && resolve());
        child.once('exit', (code) => reject(new Error(`worker process exited with ${code} before it was ready`)));
      });

    const first = startWorker();
    await ready(first);
    const handle = await client.workflow.start(deployModelVersion, {
      taskQueue: queue,
      workflowId: `rollout-killed-${Date.now()}`,
      args: [input('good_alt')],
    });
    // Kill the worker once the update is in progress: the wait activity is then running on it.
    for (;;) {
      const endpoint = await serving.get(ENDPOINT);
      if (endpoint?.state.config_update === 'IN_PROGRESS') break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    first.kill('SIGKILL');
    await new Promise((resolve) => first.once('exit', resolve));

    const second = startWorker();
    try {
      await ready(second);
      const result = await handle.result();
      expect(result.deployment.rollout?.servedEntity).toBe(servedEntityName(MODEL, versions.get('good_alt')!));
    } finally {
      second.kill('SIGTERM');
      await new Promise((resolve) => second.once('exit', resolve));
    }
    const endpoints = await serving.list();
    expect(endpoints.map((endpoint) => endpoint.name)).toEqual([ENDPOINT]);
    expect((await serving.get(ENDPOINT))?.state).toEqual({ ready: 'READY', config_update: 'NOT_UPDATING' });
    expect(await served()).toEqual({ [versions.get('good_alt')!]: 100 });
  }, 300_000);

  it('deletes the endpoint, and deleting it again succeeds', async () => {
    const run = (id: string) =>
      client.workflow.execute(deleteEndpoint, { taskQueue: TASK_QUEUE, workflowId: id, args: [{ serving: baseServing }] });
    expect(await run(`delete-1-${Date.now()}`)).toEqual({ endpoint: ENDPOINT, deleted: true });
    expect(await run(`delete-2-${Date.now()}`)).toEqual({ endpoint: ENDPOINT, deleted: false });
    expect(await serving.get(ENDPOINT)).toBeUndefined();
  }, 60_000);
});
