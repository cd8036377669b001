import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { REPO_ROOT } from '../common/paths';
import { buildPipelineSpec, loadProjectConfig, resolveEnvironment, DEFAULT_CONFIG_FILE } from '../config/load';
import { temporalAddress, temporalUiUrl, type StackSettings } from '../config/stack';
import { trainAndDeploy } from '../workflows';
import { MLOPS_ENV, MLOPS_MODEL } from '../workflows/search-attributes';
import type { PipelineSpec, ServingSpec, VariantName } from '../workflows/types';

/** The real dataset's conventional location; the file is not committed. */
export const DEFAULT_DATA_FILE = path.join(REPO_ROOT, 'data', 'hotel_reservations.csv');

function git(args: string[]): string | undefined {
  try {
    return execFileSync('git', args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    return undefined;
  }
}

export interface PipelineRequest {
  /** Bookings CSV; required unless `synthetic` is set. */
  dataPath?: string;
  /** Ingest a batch of new synthetic bookings instead of a file. */
  synthetic?: { rows: number; seed?: number };
  env?: string;
  /** Feature set to train with instead of model.feature_set. */
  featureSet?: string;
  /** Model variant (default basic). */
  variant?: string;
  /** Rows to train on: segment or all (default: model.training_rows). */
  trainingRows?: string;
  configFile?: string;
  workflowId?: string;
  serving?: Partial<ServingSpec>;
}

/** Builds the run's spec from the project config, the git checkout and the request. */
export function pipelineSpec(request: PipelineRequest): PipelineSpec {
  const config = loadProjectConfig(request.configFile ?? DEFAULT_CONFIG_FILE);
  const env = resolveEnvironment(config, request.env);
  if (request.synthetic) {
    const { rows } = request.synthetic;
    if (!Number.isInteger(rows) || rows < 1) {
      throw new Error(`Invalid synthetic batch size ${rows}: expected a positive integer.`);
    }
  } else if (!request.dataPath) {
    throw new Error('No input given: pass a bookings CSV with --data PATH or a synthetic batch with --synthetic ROWS.');
  } else if (!fs.existsSync(request.dataPath)) {
    throw new Error(`Data file not found: ${request.dataPath}. Pass an existing bookings CSV with --data PATH.`);
  } else if (!fs.statSync(request.dataPath).isFile()) {
    throw new Error(`Data file ${request.dataPath} is not a regular file. Pass the path of a CSV file with --data PATH.`);
  }
  const spec = buildPipelineSpec(config, {
    env,
    sourcePath: request.dataPath ?? '',
    gitSha: git(['rev-parse', 'HEAD']) ?? 'unknown',
    branch: git(['rev-parse', '--abbrev-ref', 'HEAD']) ?? 'unknown',
    serving: request.serving,
    featureSet: request.featureSet,
    variants: request.variant === undefined ? undefined : request.variant.split(',').map((name) => name.trim()),
    trainingRows: trainingRows(request.trainingRows),
  });
  return request.synthetic ? { ...spec, syntheticBatch: request.synthetic } : spec;
}

function trainingRows(value: string | undefined): 'segment' | 'all' | undefined {
  if (value === undefined || value === 'segment' || value === 'all') return value;
  throw new Error(`Invalid --training-rows ${JSON.stringify(value)}: use segment (the training segment only) or all.`);
}

/** Business id of a run: variants, environment and start time, readable in the Web UI. */
export function pipelineWorkflowId(spec: PipelineSpec, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
  const names = spec.variants?.map((variant) => variant.name) ?? [spec.variant];
  const variants = names.length > 1 ? `${names.length}-variants` : names[0];
  return `train-and-deploy-${variants}-${spec.env}-${stamp}`;
}

export async function connectClient(settings: StackSettings): Promise<Client> {
  const connection = await Connection.connect({ address: temporalAddress(settings) });
  return new Client({ connection, namespace: settings.temporalNamespace });
}

/** Starts the pipeline workflow; a repeated start with the same id attaches to the running run. */
export async function startPipeline(
  client: Client,
  settings: StackSettings,
  spec: PipelineSpec,
  workflowId = pipelineWorkflowId(spec),
): Promise<WorkflowHandle<typeof trainAndDeploy>> {
  return client.workflow.start(trainAndDeploy, {
    taskQueue: settings.taskQueue,
    workflowId,
    args: [spec],
    workflowIdConflictPolicy: 'USE_EXISTING',
    workflowIdReusePolicy: 'ALLOW_DUPLICATE_FAILED_ONLY',
    typedSearchAttributes: [
      { key: MLOPS_ENV, value: spec.env },
      { key: MLOPS_MODEL, value: spec.registry.modelName },
    ],
  });
}

export function workflowUiUrl(settings: StackSettings, workflowId: string, runId: string): string {
  return `${temporalUiUrl(settings)}/namespaces/${settings.temporalNamespace}/workflows/${encodeURIComponent(workflowId)}/${runId}/history`;
}

/** Returns how many workers have polled the pipeline's task queue recently (the server keeps about a minute). */
export async function workflowPollerCount(client: Client, settings: StackSettings): Promise<number> {
  const response = await client.workflowService.describeTaskQueue({
    namespace: settings.temporalNamespace,
    taskQueue: { name: settings.taskQueue },
    taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
  });
  return response.pollers?.length ?? 0;
}
