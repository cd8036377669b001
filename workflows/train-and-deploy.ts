import { log, proxyActivities, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { deployAndVerify } from './deploy';
import { controlPlaneRetry, jobRetry } from './retry-policies';
import { MLOPS_ENV, MLOPS_MODEL, MLOPS_STAGE } from './search-attributes';
import type { PipelineResult, PipelineSpec } from './types';

const { generateSyntheticBookings, ingestBookings, registerModelVersion } = proxyActivities<Activities>({
  startToCloseTimeout: '10m',
  retry: controlPlaneRetry,
});

const { trainModel, logTrainingRun } = proxyActivities<Activities>({
  startToCloseTimeout: '2h',
  heartbeatTimeout: '1m',
  retry: jobRetry,
});

/**
 * Runs the model lifecycle in one run. It ingests the bookings file into new table versions, trains the
 * model and logs it to MLflow. Then it registers a model version with an alias and deploys it to a
 * serving endpoint that must pass a smoke test.
 */
export async function trainAndDeploy(spec: PipelineSpec): Promise<PipelineResult> {
  const stage = (name: string): void => upsertSearchAttributes([{ key: MLOPS_STAGE, value: name }]);
  upsertSearchAttributes([
    { key: MLOPS_ENV, value: spec.env },
    { key: MLOPS_MODEL, value: spec.registry.modelName },
  ]);

  stage('ingest');
  const sourcePath = spec.syntheticBatch ? await generateSyntheticBookings(spec.syntheticBatch) : spec.sourcePath;
  const tables = await ingestBookings({
    sourcePath,
    catalog: spec.catalog,
    schema: spec.schema,
    spec: spec.ingest,
  });

  stage('train');
  const training = await trainModel({
    train: tables.train,
    test: tables.test,
    target: spec.ingest.target.name,
    keyColumn: spec.ingest.renames[spec.ingest.idColumn] ?? spec.ingest.idColumn,
    training: spec.training,
  });

  stage('log');
  const run = await logTrainingRun({
    experiment: spec.tracking.experiment,
    artifactPath: spec.tracking.artifactPath,
    trained: training,
    train: tables.train,
    test: tables.test,
    datasetDigest: tables.report.sourceSha256,
    qualityReport: tables.report,
    tags: { 'mlops.git_sha': spec.tracking.gitSha, 'mlops.branch': spec.tracking.branch, 'mlops.env': spec.env },
  });

  stage('register');
  const modelVersion = await registerModelVersion({
    modelName: spec.registry.modelName,
    alias: spec.registry.alias,
    run,
    tags: { 'mlops.git_sha': spec.tracking.gitSha, 'mlops.workflow_id': workflowInfo().workflowId },
  });

  stage('deploy');
  const { deployment, smokeTest } = await deployAndVerify(spec.serving, modelVersion, {
    test: tables.test,
    inputs: [...spec.training.numericInputs, ...spec.training.categoricalInputs],
  });

  stage('done');
  log.info('Pipeline finished', { model: modelVersion.name, version: modelVersion.version, runId: run.runId });
  return { tables, training, run, modelVersion, deployment, smokeTest };
}
