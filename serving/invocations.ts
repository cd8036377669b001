import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../common/logger';
import type { TableName } from '../platform/catalog/port';
import type { EndpointStore, InvocationTarget } from './endpoints';
import { endpointNotFound, ServingError, toErrorResponse } from './errors';
import type { InferenceTableWriter, PayloadRow } from './inference-table';
import type { EntityLabels, ServingMetrics } from './metrics';
import type { ModelServerClient } from './model-server-client';
import { countInvocationRecords, parseInvocationRequest } from './validation';

/**
 * The invocation routes: `POST /serving-endpoints/{name}/invocations`, routed by the traffic config,
 * and `POST /serving-endpoints/{name}/served-models/{served_model_name}/invocations`, sent to one
 * served entity. Each completed invocation updates the metrics and, when the endpoint's inference
 * table is enabled, appends a row to its payload buffer. Both are in-memory updates, so the request
 * path does no file I/O.
 */

export interface InvocationDependencies {
  store: EndpointStore;
  metrics: ServingMetrics;
  payloads: InferenceTableWriter;
  client: ModelServerClient;
  logger: Logger;
  /** Throttle of the error lines of failed invocations (default: a new one per plane). */
  failureLogs?: FailureLogThrottle;
}

type InvocationParams = { Params: { name: string; servedModelName?: string } };

/** Minimum time in ms between two error log lines of failed invocations with the same endpoint and error code. */
const FAILURE_LOG_INTERVAL_MS = 10_000;

/**
 * Lets one log line per key through every FAILURE_LOG_INTERVAL_MS and counts the others, so that an
 * outage under load logs a line every few seconds instead of one per request.
 */
export class FailureLogThrottle {
  private readonly lastLogged = new Map<string, { at: number; suppressed: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Returns the number of lines suppressed since the last one when this line may be logged, or undefined. */
  admit(key: string): number | undefined {
    const now = this.now();
    const last = this.lastLogged.get(key);
    if (last && now - last.at < FAILURE_LOG_INTERVAL_MS) {
      last.suppressed += 1;
      return undefined;
    }
    this.lastLogged.set(key, { at: now, suppressed: 0 });
    return last?.suppressed ?? 0;
  }
}

/**
 * A JSON request body as received. The invocation routes keep the text, so that a body is forwarded
 * to the model server without being serialised again.
 */
class JsonText {
  constructor(readonly text: string) {}
}

/** Labels of invocations rejected before a served entity was chosen. */
function endpointOnlyLabels(endpoint: string): EntityLabels {
  return { endpoint, served_entity: '', entity_name: '', entity_version: '' };
}

export function registerInvocationRoutes(app: FastifyInstance, dependencies: InvocationDependencies): void {
  const deps = { ...dependencies, failureLogs: dependencies.failureLogs ?? new FailureLogThrottle() };
  void app.register(async (scope) => {
    // Only this scope replaces Fastify's JSON parser, so the other routes keep theirs.
    scope.removeContentTypeParser('application/json');
    scope.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
      done(null, new JsonText(body as string));
    });

    // Rejections by Fastify itself, such as a body over the size limit, never reach the handler, so
    // they are counted here.
    scope.setErrorHandler((error, request: FastifyRequest<InvocationParams>, reply) => {
      const route = `${request.method} ${request.url}`;
      const { status, body } = toErrorResponse(error, route);
      const name = request.params.name;
      if (deps.store.exists(name)) deps.metrics.recordRequest(endpointOnlyLabels(name), status, 0, false);
      if (status >= 500) deps.logger.error({ route, status, errorCode: body.error_code, error: body.message }, 'request failed');
      else deps.logger.info({ route, status, errorCode: body.error_code, error: body.message }, 'request rejected');
      return reply.code(status).send(body);
    });

    scope.post<InvocationParams>('/serving-endpoints/:name/invocations', (request, reply) =>
      invoke(deps, request, reply, undefined),
    );
    scope.post<InvocationParams>('/serving-endpoints/:name/served-models/:servedModelName/invocations', (request, reply) =>
      invoke(deps, request, reply, request.params.servedModelName),
    );
  });
}

/** Identity and timing of an invocation, known before its response. */
interface CallContext {
  endpoint: string;
  payloadTable?: TableName;
  target?: InvocationTarget;
  requestId: string;
  /** Arrival time in ms since the Unix epoch. */
  timestampMs: number;
  /** Arrival time as performance.now(), for durations. */
  startedAt: number;
}

/** Everything recorded about one invocation once its response is known. */
interface Outcome {
  status: number;
  labels: EntityLabels;
  /** True for failures of the model server, which serving_request_errors_total counts. */
  modelServerError: boolean;
  requestText: string;
  response: string | Buffer;
  clientRequestId?: string;
  coldStartMs?: number;
}

async function invoke(
  deps: InvocationDependencies,
  request: FastifyRequest<InvocationParams>,
  reply: FastifyReply,
  servedEntityName: string | undefined,
): Promise<FastifyReply> {
  const startedAt = performance.now();
  const timestampMs = Date.now();
  const requestId = randomUUID();
  reply.header('x-request-id', requestId);

  const name = request.params.name;
  // Unknown endpoints are not counted, so a client cannot create series for arbitrary names.
  if (!deps.store.exists(name)) throw endpointNotFound(name);
  // Read now, so an invocation that finishes after a delete or an AI gateway change is still logged.
  const payloadTable = deps.store.payloadTableOf(name);

  const rawText = request.body instanceof JsonText ? request.body.text : '';
  const outcome: Outcome = { status: 0, labels: endpointOnlyLabels(name), modelServerError: false, requestText: rawText, response: '' };
  const logContext: Record<string, unknown> = { endpoint: name, requestId };
  let target: InvocationTarget | undefined;
  let calledModelServer = false;

  try {
    const invocation = parseInvocationRequest(request.body instanceof JsonText ? parseJson(rawText) : request.body);
    outcome.clientRequestId = invocation.clientRequestId;
    // Only a body with client_request_id changes, so every other body is forwarded as received.
    if (invocation.clientRequestId !== undefined) outcome.requestText = JSON.stringify(invocation.body);
    logContext.inputKey = invocation.inputKey;
    logContext.records = countInvocationRecords(invocation);

    target = deps.store.acquireServedEntity(name, servedEntityName);
    outcome.labels = target.labels;
    logContext.servedEntity = target.servedEntityName;

    calledModelServer = true;
    const connection = await target.connect();
    outcome.coldStartMs = connection.coldStartMs;
    const response = await deps.client.invoke(
      connection.url,
      outcome.requestText,
      () => `Served entity ${target?.servedEntityName} of endpoint ${name}`,
    );

    outcome.status = response.status;
    outcome.response = response.body;
    outcome.modelServerError = response.status >= 400;
    reply.code(response.status).header('served-model-name', target.servedEntityName).header('content-type', response.contentType);
    if (outcome.coldStartMs !== undefined) reply.header('x-cold-start-ms', String(outcome.coldStartMs));
    deps.logger.info({ ...logContext, status: response.status, durationMs: elapsedMs(startedAt), coldStartMs: outcome.coldStartMs }, 'invocation');
  } catch (error) {
    const { status, body } = toErrorResponse(error, `${request.method} ${request.url}`);
    outcome.status = status;
    outcome.response = JSON.stringify(body);
    // Failures before the model server was called are client errors or "nothing ready", not model errors.
    outcome.modelServerError = calledModelServer && error instanceof ServingError;
    reply.code(status).header('content-type', 'application/json; charset=utf-8');
    if (target) reply.header('served-model-name', target.servedEntityName);
    if (outcome.coldStartMs !== undefined) reply.header('x-cold-start-ms', String(outcome.coldStartMs));
    const fields = { ...logContext, status, errorCode: body.error_code, error: body.message, durationMs: elapsedMs(startedAt) };
    if (status >= 500) {
      const suppressed = deps.failureLogs?.admit(`${name}|${body.error_code}`);
      if (suppressed !== undefined) deps.logger.error({ ...fields, suppressedSinceLastLine: suppressed }, 'invocation failed');
    } else {
      deps.logger.info(fields, 'invocation rejected');
    }
  } finally {
    target?.release();
  }

  record(deps, { endpoint: name, payloadTable, target, requestId, timestampMs, startedAt }, outcome);
  return reply.send(outcome.response);
}

/** Updates the metrics and buffers the payload table row of one completed invocation. */
function record(deps: InvocationDependencies, call: CallContext, outcome: Outcome): void {
  const durationMs = performance.now() - call.startedAt;
  // After a delete, a late invocation must not bring back the series that the delete removed.
  if (!call.target?.endpointDeleted()) {
    deps.metrics.recordRequest(outcome.labels, outcome.status, durationMs / 1000, outcome.modelServerError);
  }

  if (!call.payloadTable) return;
  const row: PayloadRow = {
    databricksRequestId: call.requestId,
    clientRequestId: outcome.clientRequestId,
    timestampMs: call.timestampMs,
    statusCode: outcome.status,
    executionTimeMs: Math.round(durationMs),
    request: outcome.requestText,
    response: outcome.response,
    endpointName: call.endpoint,
    coldStartMs: outcome.coldStartMs,
  };
  if (call.target) {
    row.servedEntityName = outcome.labels.served_entity;
    row.entityName = outcome.labels.entity_name;
    row.entityVersion = outcome.labels.entity_version;
  }
  deps.payloads.append(call.payloadTable, row);
}

function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new ServingError('BAD_REQUEST', `Invalid invocation body: it is not valid JSON (${(error as Error).message}).`);
  }
}

function elapsedMs(startedAt: number): number {
  return Math.round((performance.now() - startedAt) * 10) / 10;
}
