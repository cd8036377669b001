import { activityInfo, Context, log, sleep } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { endpointBusy, endpointUpdateFailed, smokeTestFailed } from '../common/errors';
import { apiError, classifyHttpError } from '../platform/http-errors';
import type { EndpointCoreConfig, ServedEntityOutput, ServingClient, ServingEndpoint } from '../platform/serving/client';
import type { EndpointDeployment, ServingSpec, SmokeTestResult } from '../workflows/types';

export interface DeployInput {
  serving: ServingSpec;
  modelName: string;
  version: string;
}

export function desiredConfig(input: DeployInput): EndpointCoreConfig {
  return {
    served_entities: [
      {
        entity_name: input.modelName,
        entity_version: input.version,
        workload_size: input.serving.workloadSize,
        scale_to_zero_enabled: input.serving.scaleToZeroEnabled,
      },
    ],
  };
}

/** True when `entities` serve exactly the desired model version with the desired sizing. */
export function servesDesired(entities: ServedEntityOutput[] | undefined, input: DeployInput): boolean {
  if (!entities || entities.length !== 1) return false;
  const [entity] = entities;
  return (
    entity.entity_name === input.modelName &&
    entity.entity_version === input.version &&
    entity.workload_size === input.serving.workloadSize &&
    entity.scale_to_zero_enabled === input.serving.scaleToZeroEnabled
  );
}

/**
 * Creates the endpoint or updates its config to serve the model version. Sends nothing when the
 * endpoint already serves it, or is already applying exactly this config (an earlier attempt's update).
 * A 409 conflict becomes the retryable `EndpointBusy` failure, so the activity retry policy spaces the
 * attempts; other client errors are non-retryable.
 */
export async function deployServingEndpoint(client: ServingClient, input: DeployInput): Promise<EndpointDeployment> {
  const name = input.serving.endpoint;
  const config = desiredConfig(input);
  const attempt = activityInfo().attempt;
  try {
    const current = await client.get(name);
    if (!current) {
      try {
        const created = await client.create(name, config);
        log.info('Serving endpoint created', { endpoint: name, model: input.modelName, version: input.version });
        return { endpoint: name, unchanged: false, configVersion: created.config?.config_version };
      } catch (error) {
        // Another caller created it between our get and create: take the update path next attempt.
        if (apiError(error).code === 'RESOURCE_ALREADY_EXISTS') {
          throw endpointBusy(`Serving endpoint ${name} was created concurrently; retrying as an update.`);
        }
        throw error;
      }
    }
    if (servesDesired(current.config?.served_entities, input) && current.state.config_update !== 'IN_PROGRESS') {
      log.info('Serving endpoint already serves this version; no update sent', { endpoint: name, version: input.version });
      return { endpoint: name, unchanged: true, configVersion: current.config?.config_version };
    }
    if (current.state.config_update === 'IN_PROGRESS' && servesDesired(current.pending_config?.served_entities, input)) {
      log.info('Serving endpoint is already applying this config', { endpoint: name, version: input.version });
      return { endpoint: name, unchanged: false, configVersion: current.pending_config?.config_version };
    }
    const updated = await client.updateConfig(name, config);
    log.info('Serving endpoint config update sent', { endpoint: name, version: input.version, attempt });
    return { endpoint: name, unchanged: false, configVersion: updated.pending_config?.config_version };
  } catch (error) {
    const { status, code, message } = apiError(error);
    if (status === 409 && code !== 'RESOURCE_ALREADY_EXISTS') {
      log.warn('Serving endpoint busy; the retry policy will try again', { endpoint: name, attempt, code });
      throw endpointBusy(`Serving endpoint ${name} is busy with another config update (409 ${code}): ${message}`);
    }
    if (error instanceof ApplicationFailure) throw error;
    throw classifyHttpError(error, `Deploying model ${input.modelName} version ${input.version} to ${name}`);
  }
}

export interface WaitInput extends DeployInput {}

/**
 * Polls the endpoint until it is READY with no update in progress and serving the model version.
 * The deadline survives activity retries through the heartbeat details.
 */
export async function waitForEndpointReady(client: ServingClient, input: WaitInput): Promise<ServingEndpoint> {
  const name = input.serving.endpoint;
  const previous = activityInfo().heartbeatDetails as { deadline?: number } | undefined;
  const deadline = previous?.deadline ?? Date.now() + input.serving.readyTimeoutSeconds * 1000;
  let lastState = '';
  for (;;) {
    Context.current().heartbeat({ deadline });
    let endpoint: ServingEndpoint | undefined;
    try {
      endpoint = await client.get(name);
    } catch (error) {
      const failure = classifyHttpError(error, `Reading serving endpoint ${name}`);
      if (failure.nonRetryable || Date.now() > deadline) throw failure;
      // The serving plane may be restarting: keep polling until the deadline instead of failing the run.
      log.warn('Serving endpoint unreachable; polling again', { endpoint: name, error: failure.message });
      await sleep(input.serving.pollIntervalSeconds * 1000);
      continue;
    }
    if (!endpoint) throw endpointUpdateFailed(`Serving endpoint ${name} disappeared while waiting for it.`, true);

    const state = `${endpoint.state.ready}/${endpoint.state.config_update}`;
    if (state !== lastState) {
      log.info('Serving endpoint state', { endpoint: name, ready: endpoint.state.ready, update: endpoint.state.config_update });
      lastState = state;
    }
    const serving = servesDesired(endpoint.config?.served_entities, input);
    if (serving && endpoint.state.ready === 'READY' && endpoint.state.config_update === 'NOT_UPDATING') return endpoint;
    if (endpoint.state.config_update === 'UPDATE_FAILED' && !serving) {
      const message = endpoint.pending_config?.served_entities?.[0]?.state?.deployment_state_message ?? '';
      throw endpointUpdateFailed(
        `Serving endpoint ${name} failed to deploy ${input.modelName} version ${input.version} (UPDATE_FAILED). ` +
          `The previous config keeps serving. ${message}`.trim(),
        true,
      );
    }
    if (Date.now() > deadline) {
      throw endpointUpdateFailed(
        `Serving endpoint ${name} was not READY with version ${input.version} within ` +
          `${input.serving.readyTimeoutSeconds} s (state ${state}). Check the serving plane log.`,
        true,
      );
    }
    await sleep(input.serving.pollIntervalSeconds * 1000);
  }
}

export interface SmokeTestInput {
  endpoint: string;
  record: Record<string, unknown>;
  /**
   * Shape of one prediction: `label` is 0 or 1 (sklearn models), `label_and_probability` is
   * `{prediction: 0|1, probability: 0..1}` with the label matching the probability (the pyfunc model).
   */
  output: PredictionOutput;
}

export type PredictionOutput = 'label' | 'label_and_probability';

/** Returns why a prediction breaks the output contract, or undefined when it conforms. */
export function predictionProblem(prediction: unknown, output: PredictionOutput): string | undefined {
  if (output === 'label') return prediction === 0 || prediction === 1 ? undefined : 'expected 0 or 1';
  const record = prediction as { prediction?: unknown; probability?: unknown } | null;
  if (typeof record !== 'object' || record === null) return 'expected an object with prediction and probability';
  const { prediction: label, probability } = record;
  if (typeof probability !== 'number' || !(probability >= 0 && probability <= 1)) return 'expected probability between 0 and 1';
  if (label !== (probability > 0.5 ? 1 : 0)) return 'expected prediction 1 exactly when probability is above 0.5';
  return undefined;
}

/** Sends one record to the endpoint and checks that the response has the Databricks shape and a valid label. */
export async function smokeTestEndpoint(client: ServingClient, input: SmokeTestInput): Promise<SmokeTestResult> {
  const request = { dataframe_records: [input.record] };
  let result;
  try {
    result = await client.query(input.endpoint, request);
  } catch (error) {
    throw classifyHttpError(error, `Smoke test request to ${input.endpoint}`);
  }
  const body = result.body as { predictions?: unknown[] } | undefined;
  if (result.status !== 200 || !Array.isArray(body?.predictions)) {
    throw smokeTestFailed(
      `Smoke test of ${input.endpoint} got HTTP ${result.status} with body ${JSON.stringify(result.body).slice(0, 300)}; ` +
        'expected 200 with {"predictions": [...]}.',
    );
  }
  const predictions = body.predictions;
  const problem = predictions.length === 1 ? predictionProblem(predictions[0], input.output) : 'expected one prediction';
  if (problem) {
    throw smokeTestFailed(`Smoke test of ${input.endpoint} returned predictions ${JSON.stringify(predictions)}: ${problem}.`);
  }
  log.info('Smoke test passed', { endpoint: input.endpoint, latencyMs: result.latencyMs, servedModel: result.servedModel });
  return {
    endpoint: input.endpoint,
    url: client.invocationsUrl(input.endpoint),
    request,
    predictions,
    latencyMs: result.latencyMs,
    servedModel: result.servedModel,
  };
}
