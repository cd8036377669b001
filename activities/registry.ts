import { ApplicationFailure } from '@temporalio/common';
import { log, sleep } from '@temporalio/activity';
import { jobFailed } from '../common/errors';
import { classifyHttpError } from '../platform/http-errors';
import type { MlflowRegistry, ModelVersion } from '../platform/registry/mlflow-registry';
import type { ModelVersionRef, TableRef, TrackedRun } from '../workflows/types';
import { evaluationTags } from './promotion';

export interface RegisterInput {
  modelName: string;
  alias: string;
  run: TrackedRun;
  tags: Record<string, string>;
  /** Test metrics of the run and their table, stored as version tags for later promotion decisions. */
  evaluation?: { test: TableRef; metrics: Record<string, number>; extra?: TableRef };
}

const READY_POLL_MS = 1_000;
const READY_MAX_POLLS = 300;

/**
 * Registers the run's model as a new version and points the alias at it. Idempotent: a version that
 * already exists for the same run is reused, so a retried attempt never creates a second version.
 */
export async function registerModelVersion(registry: MlflowRegistry, input: RegisterInput): Promise<ModelVersionRef> {
  try {
    await registry.ensureRegisteredModel(input.modelName, input.tags);
    const existing = await registry.findVersionsByRun(input.modelName, input.run.runId);
    let version: ModelVersion;
    if (existing.length > 0) {
      version = existing[0];
      log.info('Model version for this run already exists; reusing it', { model: input.modelName, version: version.version });
    } else {
      version = await registry.createVersion({
        name: input.modelName,
        source: input.run.modelSource,
        runId: input.run.runId,
        modelId: input.run.modelId,
        tags: { ...input.tags, ...(input.evaluation ? evaluationTags(input.evaluation.test, input.evaluation.metrics, input.evaluation.extra) : {}) },
      });
      log.info('Model version created', { model: input.modelName, version: version.version, runId: input.run.runId });
    }

    // Databricks registries pass through PENDING_REGISTRATION; OSS MLflow creates versions READY.
    for (let poll = 0; version.status !== undefined && version.status !== 'READY'; poll++) {
      if (version.status === 'FAILED_REGISTRATION') {
        throw jobFailed(
          `Registration of ${input.modelName} version ${version.version} failed: ${version.status_message ?? 'no message'}`,
          true,
        );
      }
      if (poll >= READY_MAX_POLLS) {
        throw jobFailed(`Model version ${input.modelName}/${version.version} stayed ${version.status} for 5 minutes.`);
      }
      await sleep(READY_POLL_MS);
      version = await registry.getVersion(input.modelName, version.version);
    }

    await registry.setAlias(input.modelName, input.alias, version.version);
    log.info('Alias set', { model: input.modelName, alias: input.alias, version: version.version });
    return { name: input.modelName, version: version.version, alias: input.alias };
  } catch (error) {
    if (error instanceof ApplicationFailure) throw error;
    throw classifyHttpError(error, `Registering the model of run ${input.run.runId} as ${input.modelName}`);
  }
}

export interface AliasInput {
  modelName: string;
  alias: string;
}

/** Returns the version an alias points at, or undefined when the model has no such alias yet. */
export async function resolveAliasVersion(registry: MlflowRegistry, input: AliasInput): Promise<{ version?: string }> {
  try {
    const version = await registry.getVersionByAlias(input.modelName, input.alias);
    log.info('Alias resolved', { model: input.modelName, alias: input.alias, version: version?.version ?? null });
    return version ? { version: version.version } : {};
  } catch (error) {
    throw classifyHttpError(error, `Resolving alias ${input.alias} of ${input.modelName}`);
  }
}
