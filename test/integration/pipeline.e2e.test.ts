import fs from 'node:fs';
import path from 'node:path';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import axios from 'axios';
import type { Client } from '@temporalio/client';
import type { ApplicationFailure } from '@temporalio/common';
import type { Worker } from '@temporalio/worker';
import { deployServingEndpoint } from '../../activities/serving';
import { registerModelVersion } from '../../activities/registry';
import { writeSyntheticBookings } from '../../activities/synthetic';
import { connectClient, startPipeline } from '../../client/pipeline';
import { createLogger } from '../../common/logger';
import { REPO_ROOT } from '../../common/paths';
import { logsDir, mlflowUrl, servingUrl } from '../../config/stack';
import { MlflowRegistry } from '../../platform/registry/mlflow-registry';
import { ServingClient } from '../../platform/serving/client';
import { installTemporalLogging } from '../../worker/logging';
import { createWorker } from '../../worker/worker';
import { deployModelVersion } from '../../workflows';
import { variantWorkflowId } from '../../workflows/ids';
import type { ModelVersionRef, PipelineResult, PipelineSpec, VariantResult } from '../../workflows/types';
import { quietActivityEnvironment, realDataPath, tempDir, testSpec } from '../helpers/fixtures';
import { integrationSettings } from '../helpers/stack';

// The whole pipeline on the real local stack (Temporal, MLflow, serving plane, Python jobs) and the real
// dataset when HOTEL_DATA_CSV names it; synthetic bookings otherwise.

const settings = integrationSettings();
const realData = realDataPath();
const dataPath = realData ?? writeSyntheticBookings(path.join(tempDir('e2e'), 'bookings.csv'), 20_000, 42);
const spec: PipelineSpec = testSpec(dataPath, {
  readyTimeoutSeconds: 600,
  pollIntervalSeconds: 1,
  conflictRetry: { maximumAttempts: 60, intervalSeconds: 2 },
});
// The first run trains every variant; later runs train the basic one.
const allVariants = testSpec(dataPath, spec.serving, ['all']);
const registry = new MlflowRegistry(mlflowUrl(settings));
const serving = new ServingClient(servingUrl(settings));

/** The reference record that the original project's endpoint test expects to be scored 0 (not canceled). */
const KNOWN_RECORD = {
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
};

let client: Client;
let worker: Worker;
let workerRun: Promise<void>;
/** A pipeline result together with its first variant's result. */
type Outcome = PipelineResult & VariantResult;

let first: Outcome;
let second: Outcome;
let firstRun: PipelineResult;
let firstWorkflowId: string;

function withFirstVariant(result: PipelineResult): Outcome {
  return { ...result, ...result.variants[0] };
}

/**
 * Runs the pipeline with every variant and saves the histories of the run and its variant runs, from
 * which the replay test's fixtures are refreshed.
 */
async function runAllVariants(workflowId: string): Promise<PipelineResult> {
  const handle = await startPipeline(client, settings, { ...spec, variants: allVariants.variants }, workflowId);
  const result = await handle.result();
  const folder = path.join(REPO_ROOT, 'test-results', 'histories');
  fs.mkdirSync(folder, { recursive: true });
  const save = async (id: string, history: Promise<unknown>) =>
    fs.writeFileSync(path.join(folder, `${id.replace(/-\d+(-|$)/, '$1')}.json`), historyToJSON((await history) as never));
  await save(workflowId, handle.fetchHistory());
  for (const variant of result.variants) {
    const childId = variantWorkflowId(workflowId, variant.variant ?? 'basic');
    await save(childId, client.workflow.getHandle(childId).fetchHistory());
  }
  return result;
}

beforeAll(async () => {
  installTemporalLogging(createLogger('worker', { file: path.join(logsDir(settings), 'worker.log') }));
  const created = await createWorker(settings, { identity: 'e2e-test-worker' });
  worker = created.worker;
  workerRun = created.run();
  client = await connectClient(settings);
  firstWorkflowId = `e2e-first-${Date.now()}`;
  firstRun = await runAllVariants(firstWorkflowId);
  first = withFirstVariant(firstRun);
}, 900_000);

afterAll(async () => {
  await client?.connection.close();
  worker?.shutdown();
  await workerRun;
}, 60_000);

describe('trainAndDeploy on the local stack', () => {
  it('trains a model that ranks cancellations well', () => {
    // A gradient-boosting model on these inputs and the Online split scores about 0.91 on the real data.
    expect(first.training.metrics.roc_auc).toBeGreaterThanOrEqual(realData ? 0.88 : 0.75);
    expect(first.training.metrics.accuracy).toBeGreaterThan(0.7);
  });

  it('registers a model version with the latest-model alias', async () => {
    expect(first.modelVersion.name).toBe('mlops_dev.acikgozm.hotel_reservations_model_basic');
    const aliased = await registry.getVersionByAlias(first.modelVersion.name, 'latest-model');
    expect(aliased?.run_id).toBe(first.run.runId);
  });

  it('logs params, metrics, tags and dataset inputs to the MLflow run', async () => {
    const { data } = await axios.get(`${mlflowUrl(settings)}/api/2.0/mlflow/runs/get`, {
      params: { run_id: first.run.runId },
    });
    const tags = Object.fromEntries(data.run.data.tags.map((t: { key: string; value: string }) => [t.key, t.value]));
    const metrics = data.run.data.metrics.map((m: { key: string }) => m.key);
    const params = Object.fromEntries(data.run.data.params.map((p: { key: string; value: string }) => [p.key, p.value]));
    expect(tags['mlops.git_sha']).toBe('test-sha');
    expect(tags['mlops.workflow_id']).toMatch(/^e2e-first-/);
    expect(metrics).toEqual(expect.arrayContaining(['accuracy', 'roc_auc']));
    expect(params.learning_rate).toBe('0.02');
    expect(params.n_estimators).toBe('500');
    expect(params.num_leaves).toBe('17');
    const datasets = data.run.inputs.dataset_inputs.map((d: { dataset: { name: string } }) => d.dataset.name);
    expect(datasets).toEqual(expect.arrayContaining(['mlops_dev.acikgozm.train_set', 'mlops_dev.acikgozm.test_set']));
    const artifacts = await axios.get(`${mlflowUrl(settings)}/api/2.0/mlflow/artifacts/list`, {
      params: { run_id: first.run.runId },
    });
    const files = artifacts.data.files.map((f: { path: string }) => f.path);
    expect(files).toContain('data_quality_report.json');
  });

  it('serves the known record as not canceled', async () => {
    const endpoint = await serving.get(spec.serving.endpoint);
    expect(endpoint?.state.ready).toBe('READY');
    const answer = await serving.query(spec.serving.endpoint, { dataframe_records: [KNOWN_RECORD] });
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({ predictions: [0] });
    expect(first.smokeTest?.predictions).toHaveLength(spec.serving.smokeTest!.records);
  });

  it('makes the first version champion and tags its scores', async () => {
    expect(first.promotion!.decision).toBe('first_champion');
    expect(first.promotion!.promoted).toBe(true);
    expect(first.promotion!.approval.status).toBe('not_required');
    const champion = await registry.getVersionByAlias(first.modelVersion.name, 'champion');
    expect(champion?.version).toBe(first.modelVersion.version);
    const tags = Object.fromEntries((champion?.tags ?? []).map((t) => [t.key, t.value]));
    expect(tags['mlops.test_table']).toBe(`mlops_dev.acikgozm.test_set@${first.tables.test.version}`);
    expect(Number(tags['mlops.metric.roc_auc'])).toBe(first.training.metrics.roc_auc);
    expect(tags['mlops.promotion.decision']).toBe('first_champion');
    expect(tags['mlops.promotion.outcome']).toBe('champion');
  });

  it('trains and serves every variant in its own run', async () => {
    expect(firstRun.variants.map((v) => v.variant)).toEqual(['basic', 'custom', 'feature_lookup']);
    const custom = firstRun.variants[1];
    expect(custom.modelVersion.name).toBe('mlops_dev.acikgozm.hotel_reservations_model_custom');
    expect(custom.promotion?.decision).toBe('first_champion');
    // The same pipeline on the same tables: the wrapper only changes the output.
    expect(custom.training.metrics).toEqual(first.training.metrics);
    const [prediction] = custom.smokeTest?.predictions as { prediction: number; probability: number }[];
    expect(prediction.prediction).toBe(prediction.probability > 0.5 ? 1 : 0);
    const answer = await serving.query('hotel-reservations-model-custom-serving', { dataframe_records: [KNOWN_RECORD] });
    expect(answer.status).toBe(200);
    const [known] = (answer.body as { predictions: { prediction: number; probability: number }[] }).predictions;
    expect(known.prediction).toBe(0);
    expect(known.probability).toBeLessThan(0.5);
    const child = await client.workflow.getHandle(variantWorkflowId(firstWorkflowId, 'custom')).describe();
    expect(child.status.name).toBe('COMPLETED');
  });

  it('trains the feature-lookup variant from the feature table', async () => {
    const lookup = firstRun.variants[2];
    expect(lookup.featureTable?.name).toBe('hotel_features');
    expect(lookup.modelVersion.name).toBe('mlops_dev.acikgozm.hotel_reservations_model_fe');
    // The feature table gives back the values the training rows had, so the model is the same.
    expect(lookup.training.metrics).toEqual(first.training.metrics);
    const { data } = await axios.get(`${mlflowUrl(settings)}/api/2.0/mlflow/runs/get`, { params: { run_id: lookup.run.runId } });
    const datasets = data.run.inputs.dataset_inputs.map((d: { dataset: { name: string } }) => d.dataset.name);
    expect(datasets).toContain('mlops_dev.acikgozm.hotel_features');
    const spec = await axios.get(`${mlflowUrl(settings)}/get-artifact`, {
      params: { run_uuid: lookup.run.runId, path: 'feature_spec.json' },
    });
    expect(spec.data.lookups[0]).toMatchObject({ table_name: 'mlops_dev.acikgozm.hotel_features', lookup_key: ['booking_id'] });
    expect(spec.data.functions[0]).toMatchObject({ udf_name: 'mlops_dev.acikgozm.calculate_lead_time', output_name: 'lead_time' });
    const endpoint = await serving.get('hotel-reservations-model-fe-serving');
    expect(endpoint?.state.ready).toBe('READY');
  });

  it('attaches the evaluation plots to the run', async () => {
    const listed = await axios.get(`${mlflowUrl(settings)}/api/2.0/mlflow/artifacts/list`, {
      params: { run_id: first.run.runId, path: 'evaluation' },
    });
    const files = listed.data.files.map((f: { path: string }) => f.path);
    for (const name of ['roc_curve.png', 'precision_recall_curve.png', 'confusion_matrix.png', 'feature_importance.png']) {
      expect(files).toContain(`evaluation/${name}`);
    }
    expect(files).toContain('evaluation/classification_report.json');
  });

  it('registers a retried run only once', async () => {
    const again = (await quietActivityEnvironment().run(registerModelVersion, registry, {
      modelName: first.modelVersion.name,
      alias: 'latest-model',
      run: first.run,
      tags: {},
    })) as ModelVersionRef;
    expect(again.version).toBe(first.modelVersion.version);
    expect(await registry.findVersionsByRun(first.modelVersion.name, first.run.runId)).toHaveLength(1);
  });

  it('keeps the champion when a worse model comes in', async () => {
    // Fewer, slower trees make a clearly worse model on the same tables.
    const worse: PipelineSpec = {
      ...spec,
      training: { ...spec.training, parameters: { ...spec.training.parameters, n_estimators: 10 } },
    };
    const handle = await startPipeline(client, settings, worse, `e2e-second-${Date.now()}`);
    second = withFirstVariant(await handle.result());
    expect(second.tables.reused).toBe(true);
    expect(second.tables.train).toEqual(first.tables.train);
    expect(Number(second.modelVersion.version)).toBe(Number(first.modelVersion.version) + 1);
    expect(second.training.metrics.roc_auc).toBeLessThan(first.training.metrics.roc_auc);

    expect(second.promotion!.decision).toBe('keep_champion');
    expect(second.promotion!.promoted).toBe(false);
    expect(second.promotion!.championVersion).toBe(first.modelVersion.version);
    expect(second.promotion!.championScore).toBe(first.training.metrics.roc_auc);
    expect(second.promotion!.championRescored).toBe(false);
    expect((await registry.getVersionByAlias(first.modelVersion.name, 'champion'))?.version).toBe(first.modelVersion.version);
    expect((await registry.getVersionByAlias(first.modelVersion.name, 'latest-model'))?.version).toBe(second.modelVersion.version);

    // The endpoint keeps serving the champion, so the deployment sends no update.
    expect(second.deployment?.unchanged).toBe(true);
    const endpoint = await serving.get(spec.serving.endpoint);
    expect(endpoint?.config?.served_entities[0].entity_version).toBe(first.modelVersion.version);
    expect(endpoint?.state.ready).toBe('READY');
  }, 900_000);

  it('turns a 409 conflict into a retried deployment', async () => {
    const name = first.modelVersion.name;
    const target = (version: string) => ({ serving: spec.serving, modelName: name, version });
    // The endpoint serves the champion (the first version). Start an update to the second version, then
    // deploy the first one again while that update is running.
    await serving.updateConfig(spec.serving.endpoint, {
      served_entities: [
        { entity_name: name, entity_version: second.modelVersion.version, workload_size: 'Small', scale_to_zero_enabled: true },
      ],
    });
    const busy = await quietActivityEnvironment()
      .run(deployServingEndpoint, serving, target(first.modelVersion.version))
      .catch((error: ApplicationFailure) => error);
    expect((busy as ApplicationFailure).type).toBe('EndpointBusy');
    expect((busy as ApplicationFailure).nonRetryable).toBe(false);

    const handle = await client.workflow.start(deployModelVersion, {
      taskQueue: settings.taskQueue,
      workflowId: `e2e-conflict-${Date.now()}`,
      args: [
        {
          serving: spec.serving,
          model: { name, version: first.modelVersion.version },
          test: first.tables.test,
          inputs: [...spec.training.numericInputs, ...spec.training.categoricalInputs],
        },
      ],
    });
    const result = await handle.result();
    expect(result.smokeTest.predictions).toHaveLength(spec.serving.smokeTest!.records);

    const history = await handle.fetchHistory();
    const deployAttempts = (history.events ?? [])
      .filter((e) => e.activityTaskStartedEventAttributes)
      .map((e) => e.activityTaskStartedEventAttributes!.attempt ?? 1);
    expect(Math.max(...deployAttempts)).toBeGreaterThan(1);
    const endpoint = await serving.get(spec.serving.endpoint);
    expect(endpoint?.config?.served_entities[0].entity_version).toBe(first.modelVersion.version);
  }, 900_000);

  it('merges a synthetic refresh batch into the tables', async () => {
    const handle = await startPipeline(client, settings, { ...spec, syntheticBatch: { rows: 300 } }, `e2e-refresh-${Date.now()}`);
    const refresh = withFirstVariant(await handle.result());
    const inserted = refresh.tables.changes.train.inserted + refresh.tables.changes.test.inserted + refresh.tables.changes.extra.inserted;
    expect(inserted).toBe(300);
    expect(refresh.tables.train.version).toBe(first.tables.train.version + 1);
    expect(refresh.tables.report.rowsIn).toBe(300);
    expect(Number(refresh.modelVersion.version)).toBeGreaterThan(Number(second.modelVersion.version));
    // The test table has a new version, so the champion was scored again on it by the score job.
    expect(refresh.tables.test.version).toBe(first.tables.test.version + 1);
    expect(refresh.promotion!.championVersion).toBe(first.modelVersion.version);
    expect(refresh.promotion!.championRescored).toBe(true);
    expect(refresh.promotion!.championScore).toBeGreaterThan(0.5);
    expect(refresh.smokeTest?.predictions).toHaveLength(spec.serving.smokeTest!.records);
    const endpoint = await serving.get(spec.serving.endpoint);
    expect(endpoint?.config?.served_entities[0].entity_version).toBe(refresh.promotion!.championVersionAfter);
  }, 900_000);
});
