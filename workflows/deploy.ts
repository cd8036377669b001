import { ActivityFailure, ApplicationFailure, log, patched, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { controlPlaneRetry, endpointUpdateRetry, endpointWaitRetry } from './retry-policies';
import { canaryTarget, describeTarget, mainEntity, matchesTarget, servedEntity, singleEntityTarget } from './serving-config';
import type {
  CanaryReport,
  EndpointDeployment,
  EndpointSnapshot,
  EndpointTarget,
  PipelineSpec,
  SmokeTestResult,
  TableRef,
} from './types';

type ServingSettings = PipelineSpec['serving'];

const { smokeTestEndpoint, readServingEndpoint, resolveAliasVersion } = proxyActivities<Activities>({
  startToCloseTimeout: '5m',
  heartbeatTimeout: '2m',
  retry: controlPlaneRetry,
});

/** Runs that roll out with a captured previous config, rollback and canary; older histories replay without. */
const SERVING_ROLLOUT_PATCH = 'serving-rollout';

export interface SmokeTestSource {
  test: TableRef;
  inputs: string[];
  output?: 'label' | 'label_and_probability';
}

/** Activities whose timeouts and conflict retries come from the serving settings. */
function servingActivities(serving: ServingSettings) {
  const { deployServingEndpoint, deleteServingEndpoint } = proxyActivities<Activities>({
    startToCloseTimeout: '2m',
    retry: endpointUpdateRetry(serving.conflictRetry),
  });
  const { waitForEndpointReady } = proxyActivities<Activities>({
    startToCloseTimeout: `${serving.readyTimeoutSeconds + 60}s`,
    heartbeatTimeout: `${Math.max(30, serving.pollIntervalSeconds * 5)}s`,
    retry: endpointWaitRetry,
  });
  const canarySeconds = serving.rollout?.strategy === 'canary' ? serving.rollout.canary.durationSeconds : 0;
  const checkSeconds = serving.rollout?.strategy === 'canary' ? serving.rollout.canary.checkIntervalSeconds : 0;
  const { observeCanary } = proxyActivities<Activities>({
    startToCloseTimeout: `${canarySeconds + 300}s`,
    heartbeatTimeout: `${Math.max(60, checkSeconds * 3)}s`,
    retry: controlPlaneRetry,
  });
  return { deployServingEndpoint, deleteServingEndpoint, waitForEndpointReady, observeCanary };
}

/** Returns the failure type of an activity failure, such as `SmokeTestFailed`. */
function failureType(error: unknown): string | undefined {
  if (error instanceof ActivityFailure && error.cause instanceof ApplicationFailure) return error.cause.type ?? undefined;
  return undefined;
}

function failureMessage(error: unknown): string {
  if (error instanceof ActivityFailure && error.cause) return error.cause.message;
  return error instanceof Error ? error.message : String(error);
}

/**
 * Points the endpoint at a model version and waits until it serves that version, then smoke-tests it.
 * This is the deployment of runs started before rollouts had rollback and canary; they keep it on replay.
 */
export async function deployAndVerify(
  serving: ServingSettings,
  model: { name: string; version: string },
  smokeTest: SmokeTestSource,
): Promise<{ deployment: EndpointDeployment; smokeTest: SmokeTestResult }> {
  const { deployServingEndpoint, waitForEndpointReady } = servingActivities(serving);
  const target = { serving, modelName: model.name, version: model.version };
  const deployment = await deployServingEndpoint(target);
  await waitForEndpointReady(target);
  const result = await smokeTestEndpoint({ endpoint: serving.endpoint, ...smokeTest });
  return { deployment, smokeTest: result };
}

/**
 * Rolls a model version out to the endpoint and proves it serves:
 * 1. reads the config the endpoint serves now, the one a rollback restores;
 * 2. stages the new version next to the current one with no traffic and waits until it is READY, so
 *    clients never reach a version that has not passed its smoke test (a new endpoint gets the
 *    version alone);
 * 3. smoke-tests the new version's served entity with test-table records;
 * 4. direct: gives it all traffic. Canary: gives it a share of the traffic, watches its error rate and
 *    latency, then gives it all traffic or rolls back.
 * A failed smoke test or canary restores the previous config (or deletes an endpoint this rollout
 * created) and fails the run with the reason, while the previous version keeps serving.
 */
export async function rollOut(
  serving: ServingSettings,
  model: { name: string; version: string },
  source: SmokeTestSource,
): Promise<{ deployment: EndpointDeployment; smokeTest: SmokeTestResult }> {
  const activities = servingActivities(serving);
  const endpoint = serving.endpoint;
  const before = await readServingEndpoint({ endpoint });
  const entity = servedEntity(serving, model.name, model.version);
  const final = singleEntityTarget(entity);
  const previous = before.config;
  const previousVersions = [...new Set(previous?.entities.map((candidate) => candidate.entity_version) ?? [])];
  const alreadyServed = matchesTarget(previous, final);

  const stable = previous && !alreadyServed ? mainEntity(previous, entity.name) : undefined;
  const canary = serving.rollout?.strategy === 'canary' && stable ? serving.rollout.canary : undefined;
  const staged = stable ? canaryTarget(stable, entity, 0) : final;
  if (serving.rollout?.strategy === 'canary' && !canary) {
    log.warn('Canary rollout requested, but no other version serves on the endpoint, so the version gets all traffic', { endpoint });
  }
  log.info('Rolling out', {
    endpoint,
    version: model.version,
    strategy: canary ? 'canary' : 'direct',
    from: previous ? describeTarget(previous) : 'no endpoint',
    to: describeTarget(final),
  });

  // The result names the config version that serves at the end, so each apply below replaces it.
  let deployment = await apply(serving, model, staged);
  let smokeTest: SmokeTestResult;
  try {
    smokeTest = await smokeTestEndpoint({
      endpoint,
      ...source,
      servedEntity: entity.name,
      records: serving.smokeTest?.records ?? 1,
      requests: serving.smokeTest?.requests ?? 1,
      ...(serving.smokeTest ? { maxLatencyMs: serving.smokeTest.maxLatencyMs } : {}),
    });
  } catch (error) {
    if (failureType(error) !== 'SmokeTestFailed' || alreadyServed) throw error;
    const restored = await restore(serving, model, before);
    throw ApplicationFailure.nonRetryable(
      `Version ${model.version} of ${model.name} failed its smoke test on ${endpoint}: ${failureMessage(error)} ${restored}`,
      'SmokeTestFailed',
    );
  }
  if (stable && canary) {
    log.info('Smoke test passed; sending the canary its share of the traffic', { endpoint, version: model.version });
    deployment = await apply(serving, model, canaryTarget(stable, entity, canary.trafficPercentage));
  } else if (stable) {
    log.info('Smoke test passed; sending all traffic to the new version', { endpoint, version: model.version });
    deployment = await apply(serving, model, final);
  }

  let canaryReport: CanaryReport | undefined;
  if (canary) {
    canaryReport = await activities.observeCanary({ endpoint, servedEntity: entity.name, canary });
    if (canaryReport.verdict === 'rollback') {
      const restored = await restore(serving, model, before);
      throw ApplicationFailure.nonRetryable(
        `Canary of version ${model.version} of ${model.name} on ${endpoint} failed: ${canaryReport.reason}. ${restored}`,
        'CanaryFailed',
        canaryReport,
      );
    }
    log.info('Canary passed; promoting to all traffic', { endpoint, version: model.version, reason: canaryReport.reason });
    deployment = await apply(serving, model, final);
  }

  return {
    deployment: {
      ...deployment,
      rollout: {
        strategy: canary ? 'canary' : 'direct',
        servedEntity: entity.name,
        previousVersions,
        ...(canaryReport ? { canary: canaryReport } : {}),
      },
    },
    smokeTest,
  };
}

/**
 * Sends a config and waits until the endpoint serves it. Conflicts that outlast the retry policy end
 * the run with a message that names the exhausted policy, instead of the last attempt's error alone.
 */
async function apply(serving: ServingSettings, model: { name: string; version: string }, target: EndpointTarget): Promise<EndpointDeployment> {
  const activities = servingActivities(serving);
  const input = { serving, modelName: model.name, version: model.version, target };
  let deployment: EndpointDeployment;
  try {
    deployment = await activities.deployServingEndpoint(input);
  } catch (error) {
    if (failureType(error) !== 'EndpointBusy') throw error;
    const { maximumAttempts, intervalSeconds } = serving.conflictRetry;
    throw ApplicationFailure.nonRetryable(
      `Serving endpoint ${serving.endpoint} was still busy with another config update after ${maximumAttempts} attempts ` +
        `${intervalSeconds} s apart (serving.conflict_retry), so ${describeTarget(target)} was not applied. ` +
        `Last error: ${failureMessage(error)}`,
      'EndpointBusy',
    );
  }
  await activities.waitForEndpointReady(input);
  return deployment;
}

/** Puts the endpoint back to what it served before the rollout; returns a sentence saying what serves now. */
async function restore(serving: ServingSettings, model: { name: string; version: string }, before: EndpointSnapshot): Promise<string> {
  const activities = servingActivities(serving);
  try {
    if (!before.exists || !before.config) {
      await activities.deleteServingEndpoint({ endpoint: serving.endpoint });
      log.warn('Rolled back by deleting the endpoint this rollout created', { endpoint: serving.endpoint });
      return `The endpoint did not exist before, so it was deleted.`;
    }
    await apply(serving, model, before.config);
    log.warn('Rolled back to the previous config', { endpoint: serving.endpoint, config: describeTarget(before.config) });
    return `Rolled back: ${describeTarget(before.config)} serves again.`;
  } catch (error) {
    return `The rollback failed too (${failureMessage(error)}); check the endpoint with GET /api/2.0/serving-endpoints/${serving.endpoint}.`;
  }
}

export interface DeployModelVersionInput {
  serving: ServingSettings;
  /** The version to deploy, or the alias whose version to deploy, resolved when the run starts. */
  model: { name: string; version?: string; alias?: string };
  test: TableRef;
  inputs: string[];
  /** Prediction shape of the model (default label: 0 or 1). */
  output?: 'label' | 'label_and_probability';
}

/** Deploys an already registered model version, for redeploys and rollbacks from the CLI. */
export async function deployModelVersion(input: DeployModelVersionInput): Promise<{
  deployment: EndpointDeployment;
  smokeTest: SmokeTestResult;
}> {
  const source = { test: input.test, inputs: input.inputs, ...(input.output ? { output: input.output } : {}) };
  if (!patched(SERVING_ROLLOUT_PATCH)) return deployAndVerify(input.serving, { name: input.model.name, version: input.model.version ?? '' }, source);
  let version = input.model.version;
  if (version === undefined) {
    if (!input.model.alias) throw ApplicationFailure.nonRetryable('Give the model version or an alias to deploy.', 'InvalidInput');
    version = (await resolveAliasVersion({ modelName: input.model.name, alias: input.model.alias })).version;
    if (version === undefined) {
      throw ApplicationFailure.nonRetryable(`Model ${input.model.name} has no alias ${input.model.alias}, so there is nothing to deploy.`, 'NotFound');
    }
  }
  return rollOut(input.serving, { name: input.model.name, version }, source);
}

/** Deletes a serving endpoint; deleting one that does not exist succeeds. */
export async function deleteEndpoint(input: { serving: ServingSettings }): Promise<{ endpoint: string; deleted: boolean }> {
  return servingActivities(input.serving).deleteServingEndpoint({ endpoint: input.serving.endpoint });
}

export { SERVING_ROLLOUT_PATCH };
