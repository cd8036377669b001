import path from 'node:path';
import { log } from '@temporalio/activity';
import { LocalCatalog } from '../platform/catalog/local';
import { qualifiedName } from '../platform/catalog/port';
import type { FeatureLookupSpec, QualityReport, TableRef, TrackedRun, TrainingSpec, TrainResult } from '../workflows/types';
import { workflowIds } from './context';
import { runPythonJob } from './python-job';

export interface TrainInput {
  train: TableRef;
  test: TableRef;
  target: string;
  /** Rows are sorted by this column before fitting, so the model does not depend on storage order. */
  keyColumn: string;
  training: TrainingSpec;
  /** Feature table version the feature-lookup variant takes its looked-up features from. */
  featureTable?: TableRef;
  /** With training on all rows: the other segments' table and the test share of its split. */
  extraRows?: { table: TableRef; testFraction: number };
}

/** Folder of one workflow's job files; the workflow id keeps a retried attempt on the same folder. */
export function jobWorkDir(jobsRoot: string, step: string): string {
  const safeId = workflowIds().workflowId.replace(/[^A-Za-z0-9_.-]/g, '_');
  return path.join(jobsRoot, safeId, step);
}

/** Trains the model in the Python job; a retry on the same tables reuses the finished output. */
export async function trainModel(catalogRoot: string, jobsRoot: string, input: TrainInput): Promise<TrainResult> {
  const catalog = new LocalCatalog(catalogRoot);
  const workDir = jobWorkDir(jobsRoot, 'train');
  const result = await runPythonJob<{
    model_dir: string;
    evaluation_dir: string;
    metrics: Record<string, number>;
    params: Record<string, string | number | boolean | null>;
    train_rows: number;
    test_rows: number;
    reused: boolean;
  }>(
    'train',
    {
      train_path: catalog.snapshotPath(input.train),
      test_path: catalog.snapshotPath(input.test),
      output_dir: path.join(workDir, 'output'),
      target: input.target,
      key_column: input.keyColumn,
      numeric_inputs: input.training.numericInputs,
      categorical_inputs: input.training.categoricalInputs,
      derived_inputs: input.training.derivedInputs,
      feature_set: input.training.featureSet,
      flavor: input.training.flavor,
      ...(input.extraRows
        ? {
            extra_rows: {
              path: catalog.snapshotPath(input.extraRows.table),
              key: input.keyColumn,
              test_fraction: input.extraRows.testFraction,
            },
          }
        : {}),
      ...(input.featureTable && input.training.featureLookup
        ? {
            feature_lookup: {
              table_path: catalog.snapshotPath(input.featureTable),
              key: input.training.featureLookup.key,
              features: input.training.featureLookup.features,
            },
          }
        : {}),
      parameters: input.training.parameters,
      seed: input.training.seed,
    },
    workDir,
  );
  log.info('Model trained', { train: qualifiedName(input.train), version: input.train.version, ...result.metrics });
  return {
    modelDir: result.model_dir,
    evaluationDir: result.evaluation_dir,
    metrics: result.metrics,
    params: result.params,
    trainRows: result.train_rows,
    testRows: result.test_rows,
    reused: result.reused,
  };
}

export interface LogRunInput {
  experiment: string;
  artifactPath: string;
  trained: TrainResult;
  train: TableRef;
  test: TableRef;
  /** Hash of the ingested source, used as the dataset digest. */
  datasetDigest: string;
  /** Data-quality report of the ingestion that wrote the tables, logged as a run artifact. */
  qualityReport?: QualityReport;
  tags: Record<string, string>;
  /** The feature-lookup variant's lookups, logged as feature_spec.json with the feature table as input. */
  featureLookup?: { spec: FeatureLookupSpec; table: TableRef };
}

/**
 * Returns the feature spec of a feature-lookup model: the lookup by key in a feature table version and
 * the function that computes lead_time, in the shape of a Databricks feature spec, so serving can look
 * the same features up later.
 */
export function featureSpecDocument(lookup: FeatureLookupSpec, table: TableRef): Record<string, unknown> {
  return {
    lookups: [
      { table_name: qualifiedName(table), table_version: table.version, lookup_key: [lookup.key], feature_names: lookup.features },
    ],
    functions: [
      {
        udf_name: `${table.catalog}.${table.schema}.${lookup.functionName}`,
        output_name: 'lead_time',
        input_bindings: { date_of_arrival: 'date_of_arrival', date_of_booking: 'date_of_booking' },
      },
    ],
    exclude_columns: ['update_timestamp_utc', 'market_segment_type'],
  };
}

/**
 * Logs the trained model with its parameters, metrics and dataset inputs as one MLflow run. The run is
 * tagged with an idempotency key made from the workflow id, so a retried attempt finds its own run.
 */
export async function logTrainingRun(
  catalogRoot: string,
  jobsRoot: string,
  trackingUri: string,
  input: LogRunInput,
): Promise<TrackedRun> {
  const catalog = new LocalCatalog(catalogRoot);
  const ids = workflowIds();
  const workDir = jobWorkDir(jobsRoot, 'log');
  const dataset = (ref: TableRef, context: string) => ({
    name: qualifiedName(ref),
    version: ref.version,
    path: catalog.snapshotPath(ref),
    context,
    digest: input.datasetDigest.slice(0, 16),
  });
  const result = await runPythonJob<{
    run_id: string;
    experiment_id: string;
    model_id: string;
    model_source: string;
    reused: boolean;
  }>(
    'log',
    {
      tracking_uri: trackingUri,
      experiment_name: input.experiment,
      run_name: ids.workflowId,
      idempotency_key: `${ids.workflowId}/${input.artifactPath}`,
      model_dir: input.trained.modelDir,
      artifact_path: input.artifactPath,
      params: input.trained.params,
      metrics: input.trained.metrics,
      tags: {
        ...input.tags,
        'mlops.workflow_id': ids.workflowId,
        'mlops.workflow_run_id': ids.runId,
      },
      datasets: [
        dataset(input.train, 'training'),
        dataset(input.test, 'testing'),
        ...(input.featureLookup ? [dataset(input.featureLookup.table, 'feature_lookup')] : []),
      ],
      json_artifacts: {
        ...(input.qualityReport ? { 'data_quality_report.json': input.qualityReport } : {}),
        ...(input.featureLookup
          ? { 'feature_spec.json': featureSpecDocument(input.featureLookup.spec, input.featureLookup.table) }
          : {}),
      },
      artifact_dir: input.trained.evaluationDir,
    },
    workDir,
  );
  const runUrl = `${trackingUri.replace(/\/$/, '')}/#/experiments/${result.experiment_id}/runs/${result.run_id}`;
  log.info('Training run logged', { runId: result.run_id, modelId: result.model_id, reused: result.reused });
  return {
    runId: result.run_id,
    experimentId: result.experiment_id,
    modelId: result.model_id,
    modelSource: result.model_source,
    runUrl,
    reused: result.reused,
  };
}
