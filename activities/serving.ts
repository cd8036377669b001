import { activityInfo, Context, log, sleep } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { endpointBusy, endpointUpdateFailed, smokeTestFailed } from '../common/errors';
import { apiError, classifyHttpError } from '../platform/http-errors';
import type {
  EndpointCoreConfig,
  InferenceTableConfig,
  ServedEntityOutput,
  ServingClient,
  ServingEndpoint,
  TrafficConfig,
} from '../platform/serving/client';
import { entityTraffic, latencyQuantileMs, parsePrometheusText, trafficSince, type EntityTraffic } from '../platform/serving/metrics';
import { describeTarget, matchesTarget, singleEntityTarget, servedEntity } from '../workflows/serving-config';
import type {
  CanaryReport,
  CanarySpec,
  EndpointDeployment,
  EndpointSnapshot,
  EndpointTarget,
  ServingSpec,
  SmokeTestResult,
} from '../workflows/types';

export interface DeployInput {
  serving: ServingSpec;
  modelName: string;
  version: string;
  /** Whole config to apply. Absent in runs recorded before rollouts: one entity serving `version`. */
  target?: EndpointTarget;
}

/** Returns the config an input requests: its target, or one entity that takes all traffic. */
export function targetOf(input: DeployInput): EndpointTarget {
  return input.target ?? singleEntityTarget(servedEntity(input.serving, input.modelName, input.version));
}

export function toCoreConfig(target: EndpointTarget): EndpointCoreConfig {
  return {
    served_entities: target.entities.map((entity) => ({ ...entity })),
    traffic_config: { routes: target.routes.map((route) => ({ ...route })) },
  };
}

/** Payload table settings of an endpoint: `<catalog>.<schema>.<endpoint with _ for ->_payload`. */
export function inferenceTableConfig(serving: ServingSpec): InferenceTableConfig | undefined {
  if (!serving.inferenceTable) return undefined;
  return {
    catalog_name: serving.inferenceTable.catalog,
    schema_name: serving.inferenceTable.schema,
    table_name_prefix: serving.endpoint.replace(/-/g, '_'),
    enabled: true,
  };
}

/** Reads a served config back into the target shape; routes default to 100 % for a single entity. */
export function targetFromOutput(entities: ServedEntityOutput[] | undefined, traffic: TrafficConfig | undefined): EndpointTarget | undefined {
  if (!entities || entities.length === 0) return undefined;
  const targetEntities = entities.map((entity) => ({
    name: entity.name,
    entity_name: entity.entity_name,
    entity_version: entity.entity_version,
    workload_size: entity.workload_size,
    scale_to_zero_enabled: entity.scale_to_zero_enabled,
  }));
  const routes =
    traffic?.routes?.map((route) => ({ served_entity_name: route.served_entity_name, traffic_percentage: route.traffic_percentage })) ??
    (targetEntities.length === 1 ? [{ served_entity_name: targetEntities[0].name, traffic_percentage: 100 }] : []);
  return { entities: targetEntities, routes };
}

const activeTarget = (endpoint: ServingEndpoint): EndpointTarget | undefined =>
  targetFromOutput(endpoint.config?.served_entities, endpoint.config?.traffic_config);
const pendingTarget = (endpoint: ServingEndpoint): EndpointTarget | undefined =>
  targetFromOutput(endpoint.pending_config?.served_entities, endpoint.pending_config?.traffic_config);

/** Reads what the endpoint serves now, so a failed rollout can restore it. */
export async function readServingEndpoint(client: ServingClient, input: { endpoint: string }): Promise<EndpointSnapshot> {
  let endpoint: ServingEndpoint | undefined;
  try {
    endpoint = await client.get(input.endpoint);
  } catch (error) {
    throw classifyHttpError(error, `Reading serving endpoint ${input.endpoint}`);
  }
  if (!endpoint) return { endpoint: input.endpoint, exists: false };
  const config = activeTarget(endpoint);
  return {
    endpoint: input.endpoint,
    exists: true,
    ...(config ? { config } : {}),
    ...(endpoint.config?.config_version !== undefined ? { configVersion: endpoint.config.config_version } : {}),
    state: { ready: endpoint.state.ready, config_update: endpoint.state.config_update },
  };
}

/**
 * Creates the endpoint or updates its config to the target. Sends nothing when the endpoint already
 * serves the target, or is already applying exactly it (an earlier attempt's update). A 409 conflict
 * becomes the retryable `EndpointBusy` failure, so the activity retry policy spaces the attempts; other
 * client errors are non-retryable.
 */
export async function deployServingEndpoint(client: ServingClient, input: DeployInput): Promise<EndpointDeployment> {
  const name = input.serving.endpoint;
  const target = targetOf(input);
  const config = toCoreConfig(target);
  const inferenceTable = inferenceTableConfig(input.serving);
  const attempt = activityInfo().attempt;
  const described = describeTarget(target);
  try {
    const current = await client.get(name);
    if (!current) {
      try {
        const created = await client.create(name, config, inferenceTable);
        log.info('Serving endpoint created', { endpoint: name, config: described, attempt });
        return { endpoint: name, unchanged: false, configVersion: created.config?.config_version };
      } catch (error) {
        // Another caller created it between our get and create: take the update path next attempt.
        if (apiError(error).code === 'RESOURCE_ALREADY_EXISTS') {
          throw endpointBusy(`Serving endpoint ${name} was created concurrently; retrying as an update.`);
        }
        throw error;
      }
    }
    if (inferenceTable && !current.ai_gateway?.inference_table_config?.enabled) {
      await client.putInferenceTable(name, inferenceTable);
      log.info('Inference table enabled', { endpoint: name, table: `${inferenceTable.catalog_name}.${inferenceTable.schema_name}.${inferenceTable.table_name_prefix}_payload` });
    }
    const updating = current.state.config_update === 'IN_PROGRESS';
    // A NOT_READY endpoint that has the target config lost a model server, and sending the config again
    // starts new ones.
    if (!updating && current.state.ready === 'READY' && matchesTarget(activeTarget(current), target)) {
      log.info('Serving endpoint already serves this config; no update sent', { endpoint: name, config: described });
      return { endpoint: name, unchanged: true, configVersion: current.config?.config_version };
    }
    if (updating && matchesTarget(pendingTarget(current), target)) {
      log.info('Serving endpoint is already applying this config', { endpoint: name, config: described });
      return { endpoint: name, unchanged: false, configVersion: current.pending_config?.config_version };
    }
    const updated = await client.updateConfig(name, config);
    log.info('Serving endpoint config update sent', { endpoint: name, config: described, attempt });
    return { endpoint: name, unchanged: false, configVersion: updated.pending_config?.config_version };
  } catch (error) {
    const { status, code, message } = apiError(error);
    if (status === 409 && code !== 'RESOURCE_ALREADY_EXISTS') {
      log.warn('Serving endpoint busy; the retry policy will try again', { endpoint: name, attempt, code });
      throw endpointBusy(`Serving endpoint ${name} is busy with another config update (409 ${code}): ${message}`);
    }
    if (error instanceof ApplicationFailure) throw error;
    throw classifyHttpError(error, `Deploying ${described} to ${name}`);
  }
}

/**
 * Polls the endpoint until it is READY with no update in progress and serving the target config. A
 * slow endpoint is not an error until the deadline, which survives activity retries through the
 * heartbeat details.
 */
export async function waitForEndpointReady(client: ServingClient, input: DeployInput): Promise<ServingEndpoint> {
  const name = input.serving.endpoint;
  const target = targetOf(input);
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
    const serving = matchesTarget(activeTarget(endpoint), target);
    // UPDATE_FAILED next to a served target is left from an earlier update of another config, which
    // the endpoint dropped, so it does not mean that this target failed.
    if (serving && endpoint.state.ready === 'READY' && endpoint.state.config_update !== 'IN_PROGRESS') return endpoint;
    if (endpoint.state.config_update === 'UPDATE_FAILED' && (!serving || endpoint.state.ready !== 'READY')) {
      throw endpointUpdateFailed(
        `Serving endpoint ${name} failed to deploy ${describeTarget(target)} (UPDATE_FAILED). ${endpoint.state_message ?? ''}`.trim(),
        true,
      );
    }
    if (Date.now() > deadline) {
      throw endpointUpdateFailed(
        `Serving endpoint ${name} did not serve ${describeTarget(target)} within ${input.serving.readyTimeoutSeconds} s ` +
          `(state ${state}). Raise serving.ready_timeout_seconds if the model needs longer, or check the serving plane log.`,
        true,
      );
    }
    await sleep(input.serving.pollIntervalSeconds * 1000);
  }
}

/** Deletes the endpoint; an endpoint that does not exist counts as deleted. */
export async function deleteServingEndpoint(client: ServingClient, input: { endpoint: string }): Promise<{ endpoint: string; deleted: boolean }> {
  try {
    const deleted = await client.delete(input.endpoint);
    if (deleted) log.info('Serving endpoint deleted', { endpoint: input.endpoint });
    else log.info('Serving endpoint did not exist; nothing to delete', { endpoint: input.endpoint });
    return { endpoint: input.endpoint, deleted };
  } catch (error) {
    const { status, code, message } = apiError(error);
    if (status === 409) throw endpointBusy(`Serving endpoint ${input.endpoint} cannot be deleted now (409 ${code}): ${message}`);
    throw classifyHttpError(error, `Deleting serving endpoint ${input.endpoint}`);
  }
}

export type PredictionOutput = 'label' | 'label_and_probability';

export interface SmokeTestInput {
  endpoint: string;
  records: Record<string, unknown>[];
  /**
   * Shape of one prediction: `label` is 0 or 1 (sklearn models), `label_and_probability` is
   * `{prediction: 0|1, probability: 0..1}` with the label matching the probability (the pyfunc model).
   */
  output: PredictionOutput;
  /** Served entity to query directly, whatever the traffic routes; its name must come back in `served-model-name`. */
  servedEntity?: string;
  /** Timed requests after one warm-up request (default 1, with no warm-up). */
  requests?: number;
  /** Highest median latency of the timed requests (default: no limit). */
  maxLatencyMs?: number;
}

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

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/**
 * Sends test records to the endpoint (or one served entity of it) and checks each response: HTTP 200,
 * `{"predictions": [...]}` with one valid prediction per record, the expected served entity, and a
 * median latency under the limit. The first of several requests is a warm-up that wakes a model server
 * scaled to zero; its latency does not count.
 */
export async function smokeTestEndpoint(client: ServingClient, input: SmokeTestInput): Promise<SmokeTestResult> {
  const request = { dataframe_records: input.records };
  const timed = input.requests ?? 1;
  const target = input.servedEntity ? `${input.endpoint} (served entity ${input.servedEntity})` : input.endpoint;
  const latencies: number[] = [];
  let last: { predictions: unknown[]; servedModel?: string } | undefined;
  for (let index = timed > 1 ? -1 : 0; index < timed; index++) {
    let result;
    try {
      result = await client.query(input.endpoint, request, input.servedEntity);
    } catch (error) {
      throw classifyHttpError(error, `Smoke test request to ${target}`);
    }
    const body = result.body as { predictions?: unknown[] } | undefined;
    if (result.status !== 200 || !Array.isArray(body?.predictions)) {
      throw smokeTestFailed(
        `Smoke test of ${target} got HTTP ${result.status} with body ${JSON.stringify(result.body).slice(0, 300)}; ` +
          'expected 200 with {"predictions": [...]}.',
      );
    }
    if (input.servedEntity && result.servedModel !== input.servedEntity) {
      throw smokeTestFailed(`Smoke test of ${target} got its response from served entity ${result.servedModel ?? '(none named)'}.`);
    }
    const predictions = body.predictions;
    if (predictions.length !== input.records.length) {
      throw smokeTestFailed(`Smoke test of ${target} sent ${input.records.length} records but got ${predictions.length} predictions.`);
    }
    for (const [row, prediction] of predictions.entries()) {
      const problem = predictionProblem(prediction, input.output);
      if (problem) {
        throw smokeTestFailed(`Smoke test of ${target} returned prediction ${JSON.stringify(prediction)} for record ${row}: ${problem}.`);
      }
    }
    if (index >= 0) latencies.push(result.latencyMs);
    last = { predictions, servedModel: result.servedModel };
    Context.current().heartbeat();
  }

  const medianLatencyMs = median(latencies);
  if (input.maxLatencyMs !== undefined && medianLatencyMs > input.maxLatencyMs) {
    throw smokeTestFailed(
      `Smoke test of ${target}: median latency ${medianLatencyMs} ms over ${latencies.length} requests of ${input.records.length} ` +
        `records exceeds the limit of ${input.maxLatencyMs} ms (serving.smoke_test.max_latency_ms).`,
    );
  }
  log.info('Smoke test passed', { endpoint: input.endpoint, servedEntity: input.servedEntity, records: input.records.length, medianLatencyMs, latencies });
  return {
    endpoint: input.endpoint,
    url: client.invocationsUrl(input.endpoint),
    request: { dataframe_records: input.records.slice(0, 1) },
    predictions: last?.predictions ?? [],
    latencyMs: latencies[latencies.length - 1],
    ...(last?.servedModel ? { servedModel: last.servedModel } : {}),
    latenciesMs: latencies,
    medianLatencyMs,
  };
}

export interface CanaryInput {
  endpoint: string;
  servedEntity: string;
  canary: CanarySpec;
}

interface CanaryProgress {
  startedAt: number;
  baseline: EntityTraffic;
}

async function readTraffic(client: ServingClient, endpoint: string, servedEntity: string): Promise<EntityTraffic> {
  try {
    return entityTraffic(parsePrometheusText(await client.metrics(endpoint)), endpoint, servedEntity);
  } catch (error) {
    throw classifyHttpError(error, `Reading the metrics of serving endpoint ${endpoint}`);
  }
}

/** Judges the canary's traffic so far; `final` applies the rule for too little traffic. */
export function judgeCanary(traffic: EntityTraffic, canary: CanarySpec, final: boolean): Omit<CanaryReport, 'servedEntity' | 'observedSeconds'> | undefined {
  const errorRate = traffic.requests > 0 ? traffic.errors / traffic.requests : 0;
  const p95 = latencyQuantileMs(traffic, 0.95);
  const figures = { requests: traffic.requests, errors: traffic.errors, errorRate, ...(p95 !== undefined ? { p95LatencyMs: p95 } : {}) };
  const enough = traffic.requests >= Math.max(1, canary.minRequests);
  if (enough && errorRate > canary.maxErrorRate) {
    return { verdict: 'rollback', reason: `error rate ${(errorRate * 100).toFixed(2)}% (${traffic.errors} of ${traffic.requests}) is above the limit of ${(canary.maxErrorRate * 100).toFixed(2)}%`, ...figures };
  }
  if (enough && p95 !== undefined && p95 > canary.maxP95LatencyMs) {
    return { verdict: 'rollback', reason: `p95 latency of at most ${p95} ms is above the limit of ${canary.maxP95LatencyMs} ms`, ...figures };
  }
  if (!final) return undefined;
  if (!enough) {
    const verdict = canary.onInsufficientTraffic;
    return { verdict, reason: `only ${traffic.requests} requests reached the canary, fewer than min_requests ${canary.minRequests}; on_insufficient_traffic is ${verdict}`, ...figures };
  }
  return { verdict: 'promote', reason: `error rate ${(errorRate * 100).toFixed(2)}% and p95 latency ${p95 ?? 0} ms stayed within the limits over ${traffic.requests} requests`, ...figures };
}

/**
 * Watches the canary's error rate and latency for the configured time, reading the endpoint's
 * Prometheus metrics every check interval. Returns early with a rollback verdict as soon as the limits
 * are broken over at least min_requests requests. Progress survives activity retries through the
 * heartbeat details.
 */
export async function observeCanary(client: ServingClient, input: CanaryInput): Promise<CanaryReport> {
  const { endpoint, servedEntity, canary } = input;
  const resumed = activityInfo().heartbeatDetails as CanaryProgress | undefined;
  const progress: CanaryProgress = resumed ?? { startedAt: Date.now(), baseline: await readTraffic(client, endpoint, servedEntity) };
  const deadline = progress.startedAt + canary.durationSeconds * 1000;
  log.info('Canary observation started', { endpoint, servedEntity, trafficPercentage: canary.trafficPercentage, durationSeconds: canary.durationSeconds, resumed: resumed !== undefined });
  for (;;) {
    Context.current().heartbeat(progress);
    const now = Date.now();
    const final = now >= deadline;
    const traffic = trafficSince(progress.baseline, await readTraffic(client, endpoint, servedEntity));
    const judged = judgeCanary(traffic, canary, final);
    const observedSeconds = Math.round((now - progress.startedAt) / 1000);
    if (judged) {
      const report: CanaryReport = { ...judged, servedEntity, observedSeconds };
      log.info('Canary verdict', { endpoint, ...report });
      return report;
    }
    log.info('Canary progress', { endpoint, servedEntity, requests: traffic.requests, errors: traffic.errors, observedSeconds });
    await sleep(Math.min(canary.checkIntervalSeconds * 1000, Math.max(0, deadline - now)));
  }
}
