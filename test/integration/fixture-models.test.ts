import path from 'node:path';
import axios, { type AxiosResponse } from 'axios';
import { createLogger } from '../../common/logger';
import { mlflowUrl } from '../../config/stack';
import { createServingPlane, type ServingPlane } from '../../serving/server';
import type { ServingEndpointDetailed } from '../../serving/types';
import { FIXTURE_KINDS, registerFixtureModels, type FixtureKind, type FixtureVersion } from '../helpers/fixture-models';
import { tempDir } from '../helpers/fixtures';
import { integrationSettings } from '../helpers/stack';

// Every fixture model kind served for real: registered in the stack's MLflow tracking server, then
// deployed by a serving plane that this file starts in-process with its own state folder, so each
// deployment starts a real `mlflow models serve` process.

const MODEL_NAME = 'fixture_models_test';
const SLOW_MS = 400;
const ERROR_SHARE = 0.5;
/**
 * Maximum time for an endpoint to leave IN_PROGRESS. One model server took 5-15 s to start, and about
 * 40 s each when this file started six at once on a 2-core machine.
 */
const DEPLOY_TIMEOUT_MS = 240_000;
const POLL_INTERVAL_MS = 500;

const BOOKINGS = [
  {
    no_of_adults: 2,
    no_of_children: 0,
    no_of_weekend_nights: 0,
    no_of_week_nights: 3,
    required_car_parking_space: 0,
    lead_time: 8,
    repeated_guest: 0,
    no_of_previous_cancellations: 0,
    no_of_previous_bookings_not_canceled: 0,
    avg_price_per_room: 87.78,
    no_of_special_requests: 1,
    type_of_meal_plan: 'Meal Plan 1',
    room_type_reserved: 'Room_Type 4',
    market_segment_type: 'Online',
  },
  {
    no_of_adults: 1,
    no_of_children: 1,
    no_of_weekend_nights: 2,
    no_of_week_nights: 5,
    required_car_parking_space: 1,
    lead_time: 250,
    repeated_guest: 0,
    no_of_previous_cancellations: 1,
    no_of_previous_bookings_not_canceled: 0,
    avg_price_per_room: 150.5,
    no_of_special_requests: 0,
    type_of_meal_plan: 'Not Selected',
    room_type_reserved: 'Room_Type 1',
    market_segment_type: 'Offline',
  },
  {
    no_of_adults: 3,
    no_of_children: 2,
    no_of_weekend_nights: 1,
    no_of_week_nights: 1,
    required_car_parking_space: 0,
    lead_time: 40,
    repeated_guest: 1,
    no_of_previous_cancellations: 0,
    no_of_previous_bookings_not_canceled: 2,
    avg_price_per_room: 99,
    no_of_special_requests: 3,
    type_of_meal_plan: 'Meal Plan 2',
    // A room type that the models never saw in training, which the one-hot encoders ignore.
    room_type_reserved: 'Room_Type 7',
    market_segment_type: 'Corporate',
  },
];

const settings = integrationSettings();
const trackingUri = mlflowUrl(settings);
const stateDir = tempDir('fixture-models-serving');

let plane: ServingPlane;
let baseUrl: string;
let versions: FixtureVersion[];
/** One deployment per kind, started together in beforeAll, because each model server takes seconds to start. */
const deployments = new Map<FixtureKind, Promise<ServingEndpointDetailed>>();

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function endpointName(kind: FixtureKind): string {
  return `fixture-${kind}`;
}

/** Creates the endpoint of `version.kind` and polls it until its config update is no longer IN_PROGRESS. */
async function deploy(version: FixtureVersion): Promise<ServingEndpointDetailed> {
  const name = endpointName(version.kind);
  const created = await axios.post(
    `${baseUrl}/api/2.0/serving-endpoints`,
    {
      name,
      config: {
        // Small is one uvicorn worker, so the flaky model's request counter counts every request.
        served_entities: [{ entity_name: version.name, entity_version: version.version, workload_size: 'Small', scale_to_zero_enabled: false }],
      },
    },
    { validateStatus: () => true },
  );
  if (created.status !== 200) {
    throw new Error(`Creating endpoint ${name} failed with HTTP ${created.status}: ${JSON.stringify(created.data)}`);
  }

  const deadline = Date.now() + DEPLOY_TIMEOUT_MS;
  for (;;) {
    const { data } = await axios.get<ServingEndpointDetailed>(`${baseUrl}/api/2.0/serving-endpoints/${name}`);
    if (data.state.config_update !== 'IN_PROGRESS') return data;
    if (Date.now() > deadline) {
      throw new Error(
        `Endpoint ${name} was still IN_PROGRESS after ${DEPLOY_TIMEOUT_MS} ms: ${JSON.stringify(data.state)}. ` +
          `See the model server logs under ${path.join(stateDir, 'logs')}.`,
      );
    }
    await sleep(POLL_INTERVAL_MS);
  }
}

/** Waits for the deployment of `kind` and checks that it is ready to serve. */
async function readyEndpoint(kind: FixtureKind): Promise<string> {
  const endpoint = await deployments.get(kind)!;
  expect(endpoint.state_message).toBeUndefined();
  expect(endpoint.state).toEqual({ ready: 'READY', config_update: 'NOT_UPDATING' });
  return endpoint.name;
}

/** Body of a model server's response: predictions on success, MLflow's error JSON on failure. */
interface InvocationBody {
  predictions?: unknown[];
  message?: string;
  stack_trace?: string;
}

function invoke(endpoint: string): Promise<AxiosResponse<InvocationBody>> {
  return axios.post(`${baseUrl}/serving-endpoints/${endpoint}/invocations`, { dataframe_records: BOOKINGS }, { validateStatus: () => true });
}

beforeAll(async () => {
  // The model servers that the plane starts inherit this environment. MLflow 3 sends usage telemetry
  // to an external host unless this is set.
  process.env.MLFLOW_DISABLE_TELEMETRY = 'true';
  versions = await registerFixtureModels(trackingUri, MODEL_NAME, [...FIXTURE_KINDS], { slowMs: SLOW_MS, errorShare: ERROR_SHARE });

  plane = createServingPlane({
    host: '127.0.0.1',
    port: 0,
    stateDir,
    trackingUri,
    logger: createLogger('fixture-models-test', { file: path.join(stateDir, 'logs', 'serving.log') }),
  });
  baseUrl = await plane.listen();

  for (const version of versions) {
    const deployment = deploy(version);
    // Each test awaits its own deployment. This handler only keeps a failure from counting as an
    // unhandled rejection before that test runs.
    deployment.catch(() => undefined);
    deployments.set(version.kind, deployment);
  }
}, 300_000);

afterAll(async () => {
  await plane?.close();
}, 60_000);

describe('fixture models', () => {
  test('registration returns one new version per kind', () => {
    expect(versions.map((version) => version.kind)).toEqual([...FIXTURE_KINDS]);
    for (const version of versions) expect(version.name).toBe(MODEL_NAME);
    const numbers = versions.map((version) => Number(version.version));
    expect(new Set(numbers).size).toBe(FIXTURE_KINDS.length);
    // Versions are registered in the order of the kinds.
    expect(numbers).toEqual([...numbers].sort((a, b) => a - b));
  });

  test.each(['good', 'good_alt'] as const)('%s predicts 0/1 labels', async (kind) => {
    const endpoint = await readyEndpoint(kind);

    const response = await invoke(endpoint);

    expect(response.status).toBe(200);
    expect(response.data.predictions).toHaveLength(BOOKINGS.length);
    for (const prediction of response.data.predictions ?? []) expect([0, 1]).toContain(prediction);
  }, DEPLOY_TIMEOUT_MS + 30_000);

  test('bad_output predicts 7 for every row', async () => {
    const endpoint = await readyEndpoint('bad_output');

    const response = await invoke(endpoint);

    expect(response.status).toBe(200);
    expect(response.data.predictions).toEqual([7, 7, 7]);
  }, DEPLOY_TIMEOUT_MS + 30_000);

  test('broken_start fails the endpoint create', async () => {
    const endpoint = await deployments.get('broken_start')!;

    expect(endpoint.state.config_update).toBe('UPDATE_FAILED');
    expect(endpoint.state.ready).toBe('NOT_READY');
    // The model server's log excerpt reaches the state message, so the cause is visible to clients.
    expect(endpoint.state_message).toContain('broken_start fails on purpose in load_context');
  }, DEPLOY_TIMEOUT_MS + 30_000);

  test('slow delays each request', async () => {
    const endpoint = await readyEndpoint('slow');

    const started = Date.now();
    const response = await invoke(endpoint);
    const elapsedMs = Date.now() - started;

    expect(response.status).toBe(200);
    expect(response.data.predictions).toEqual([0, 0, 0]);
    expect(elapsedMs).toBeGreaterThanOrEqual(SLOW_MS);
  }, DEPLOY_TIMEOUT_MS + 30_000);

  test('flaky fails every second request', async () => {
    const endpoint = await readyEndpoint('flaky');

    const responses: AxiosResponse<InvocationBody>[] = [];
    for (let i = 0; i < 4; i++) responses.push(await invoke(endpoint));

    expect(responses.map((response) => response.status === 200)).toEqual([true, false, true, false]);
    expect(responses[0].data.predictions).toEqual([0, 0, 0]);
    // MLflow's scoring server returns a generic message and puts the model's exception in stack_trace.
    expect(responses[1].data.stack_trace).toContain('fails request 2 on purpose');
    expect(responses[3].data.stack_trace).toContain('fails request 4 on purpose');
  }, DEPLOY_TIMEOUT_MS + 30_000);
});
