import path from 'node:path';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply } from 'fastify';
import type { Logger } from '../common/logger';
import { EndpointStore } from './endpoints';
import { MlflowModelVersionCheck, type ModelVersionCheck } from './model-versions';
import { BODY_LIMIT_BYTES, endpointNotFound, toErrorResponse, type ErrorBody } from './errors';
import type { ServingFaults } from './faults';
import { InferenceTableWriter } from './inference-table';
import { registerInvocationRoutes } from './invocations';
import { ServingMetrics } from './metrics';
import { MlflowModelServerLauncher, type ModelServerLauncher } from './model-server';
import { ModelServerClient } from './model-server-client';
import { modelServerPidDir, reapModelServers } from './orphans';
import { ScaleToZero } from './scale-to-zero';
import { parseAiGatewayRequest, parseCreateEndpointRequest, parseUpdateConfigRequest } from './validation';

export interface ServingPlaneOptions {
  host: string;
  /** TCP port of the REST API. Port 0 picks a free port, and listen() returns it in the URL. */
  port: number;
  /** State folder: endpoint definitions go to `serving/endpoints.json`, model server logs to `logs/`. */
  stateDir: string;
  /** MLflow tracking server that model servers load `models:/` URIs from. */
  trackingUri: string;
  logger: Logger;
  /** Launcher of model servers (default MlflowModelServerLauncher). Unit tests inject a fake. */
  launcher?: ModelServerLauncher;
  /**
   * Maximum time in ms for a model server to become ready (default 300 000). The default launcher
   * applies it to every start, and the plane to every cold start after scale to zero.
   */
  readyTimeoutMs?: number;
  /** Maximum time in ms to wait for a model server's response to one invocation (default 120 000). */
  invocationTimeoutMs?: number;
  /** Maximum time in ms that a replaced model server may finish invocations in flight (default 60 000). */
  drainTimeoutMs?: number;
  /**
   * Time in ms without invocations after which a served entity with scale_to_zero_enabled stops its
   * model server (default 1 800 000, the 30 minutes of Databricks).
   */
  scaleToZeroIdleMs?: number;
  /** Maximum number of model servers that the endpoints may need at once (default 16), as in EndpointStoreOptions. */
  maxModelServers?: number;
  /** Root folder of the local catalog that contains the inference (payload) tables (default `<stateDir>/catalog`). */
  catalogRoot?: string;
  /** Time in ms between two writes of buffered inference table rows (default 10 000). */
  payloadFlushIntervalMs?: number;
  /** Maximum number of unwritten inference table rows kept in memory (default 100 000). */
  payloadMaxBufferedRows?: number;
  /** Maximum request and response text of unwritten inference table rows, in UTF-16 code units (default 256 Mi). */
  payloadMaxBufferedChars?: number;
  /** Check of served model versions against the registry (default: MLflow, unless `launcher` is given). */
  modelVersionCheck?: ModelVersionCheck;
  /** Faults injected by tests. No HTTP route can set them. */
  faults?: ServingFaults;
}

export interface ServingPlane {
  app: FastifyInstance;
  /** Starts listening and returns the base URL, such as `http://127.0.0.1:8080`. */
  listen(): Promise<string>;
  /**
   * Writes the buffered inference table rows now. Resolves when they are written or, if the write
   * failed, back in the buffer for the next flush. Never rejects.
   */
  flushPayloads(): Promise<void>;
  /** Stops accepting requests, stops every model server, then writes the buffered rows. Safe to call more than once. */
  close(): Promise<void>;
}

// `mlflow models serve` (mlflow 3.17) cancels a request after 60 s by default (its --timeout), so
// this leaves room for its own timeout error to reach the client.
const DEFAULT_INVOCATION_TIMEOUT_MS = 120_000;

/** Longest path parameter the router accepts, Fastify's default. Endpoint names are shorter. */
const MAX_PARAM_LENGTH = 100;

type NameParams = { Params: { name: string } };

export function servingStateFile(stateDir: string): string {
  return path.join(stateDir, 'serving', 'endpoints.json');
}

/**
 * Creates the serving plane: a Fastify app with the Databricks Model Serving REST API subset over an
 * endpoint store. Loads persisted endpoints right away and starts their model servers in the
 * background. Throws if the endpoint definitions file is invalid.
 */
export function createServingPlane(options: ServingPlaneOptions): ServingPlane {
  const logger = options.logger;
  let baseUrl = `http://${options.host}:${options.port}`;
  const stateFile = servingStateFile(options.stateDir);
  const pidDir = modelServerPidDir(options.stateDir);
  if (!options.launcher) {
    const reaped = reapModelServers(pidDir);
    if (reaped.length > 0) logger.warn({ pids: reaped }, 'stopped model servers left by a previous serving plane');
  }
  const logsDir = path.join(options.stateDir, 'logs');
  // Tests that bring their own launcher serve made-up versions, so only the MLflow launcher checks them.
  const versionCheck = options.launcher ? options.modelVersionCheck : new MlflowModelVersionCheck(options.trackingUri, logger);
  const launcher =
    options.launcher ??
    new MlflowModelServerLauncher({
      trackingUri: options.trackingUri,
      logsDir,
      pidDir,
      logger,
      readyTimeoutMs: options.readyTimeoutMs,
    });
  // The ready gauge reads the store at scrape time, after `store` below exists.
  const metrics: ServingMetrics = new ServingMetrics((): Iterable<[string, boolean]> => store.readyStates());
  const scaleToZero = new ScaleToZero({
    launcher,
    logger,
    metrics,
    logsDir,
    idleMs: options.scaleToZeroIdleMs,
    coldStartTimeoutMs: options.readyTimeoutMs,
  });
  const store = new EndpointStore({
    launcher,
    logger,
    stateFile,
    baseUrl: () => baseUrl,
    drainTimeoutMs: options.drainTimeoutMs,
    scaleToZero,
    maxModelServers: options.maxModelServers,
    faults: options.faults,
  });
  const catalogRoot = options.catalogRoot ?? path.join(options.stateDir, 'catalog');
  const payloads = new InferenceTableWriter({
    catalogRoot,
    logger,
    metrics,
    flushIntervalMs: options.payloadFlushIntervalMs,
    maxBufferedRows: options.payloadMaxBufferedRows,
    maxBufferedChars: options.payloadMaxBufferedChars,
  });
  const client = new ModelServerClient(options.invocationTimeoutMs ?? DEFAULT_INVOCATION_TIMEOUT_MS);

  // Typed as Fastify's logger interface so that the app keeps the default FastifyInstance type.
  const loggerInstance: FastifyBaseLogger = logger;
  // Per-request logs are off because clients poll GET endpoints. The store logs every change, and
  // the invocation routes log one line per invocation.
  const app = Fastify({
    loggerInstance,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT_BYTES,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // Malformed URLs and over-long path parameters are rejected by the router, before any error handler.
    frameworkErrors: (error, request, reply) => {
      const route = `${request.method} ${request.url.slice(0, 200)}`;
      const reason =
        error.code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? `a path parameter is longer than ${MAX_PARAM_LENGTH} characters (endpoint names have at most 63)`
          : 'it is not a valid URL (check its percent-encoding)';
      const body: ErrorBody = { error_code: 'BAD_REQUEST', message: `Invalid request URL ${route}: ${reason}.` };
      logger.info({ route, status: 400, errorCode: body.error_code, code: error.code }, 'request rejected');
      // The reply of this hook is typed per route, and no route matched.
      void (reply as unknown as FastifyReply).code(400).send(body);
    },
  });
  registerErrorHandlers(app, logger);

  app.get('/health', async () => ({ status: 'ok' }));

  app.get('/metrics', async (_request, reply) => reply.type(metrics.contentType).send(await metrics.text()));

  app.post('/api/2.0/serving-endpoints', async (request) => {
    const input = parseCreateEndpointRequest(request.body);
    await versionCheck?.assertExist(input.config.served_entities, 'config.served_entities');
    return store.create(input);
  });

  app.get('/api/2.0/serving-endpoints', async () => ({ endpoints: store.list() }));

  app.get<NameParams>('/api/2.0/serving-endpoints/:name', async (request) => store.get(request.params.name));

  app.get<NameParams>('/api/2.0/serving-endpoints/:name/metrics', async (request, reply) => {
    const name = request.params.name;
    if (!store.exists(name)) throw endpointNotFound(name);
    return reply.type(metrics.contentType).send(await metrics.endpointText(name));
  });

  app.put<NameParams>('/api/2.0/serving-endpoints/:name/config', async (request) => {
    const name = request.params.name;
    if (!store.exists(name)) throw endpointNotFound(name);
    const spec = parseUpdateConfigRequest(request.body);
    await versionCheck?.assertExist(spec.served_entities, 'served_entities');
    return store.updateConfig(name, spec);
  });

  app.put<NameParams>('/api/2.0/serving-endpoints/:name/ai-gateway', async (request) => {
    const name = request.params.name;
    if (!store.exists(name)) throw endpointNotFound(name);
    return store.setAiGateway(name, parseAiGatewayRequest(request.body, name));
  });

  app.delete<NameParams>('/api/2.0/serving-endpoints/:name', async (request) => {
    const name = request.params.name;
    await store.delete(name);
    await metrics.removeEndpoint(name);
    // The endpoint's rows go to its payload table now, not at the next interval.
    await payloads.flush();
    return {};
  });

  registerInvocationRoutes(app, { store, metrics, payloads, client, logger });

  try {
    store.restore();
  } catch (error) {
    // Nothing was started yet, so this only clears the timers and the connection pool.
    void store.close();
    void payloads.close();
    void client.close();
    throw error;
  }

  let closing: Promise<void> | undefined;
  return {
    app,
    async listen(): Promise<string> {
      await app.listen({ host: options.host, port: options.port });
      const address = app.server.address();
      const port = typeof address === 'object' && address !== null ? address.port : options.port;
      baseUrl = `http://${options.host}:${port}`;
      logger.info({ url: baseUrl, stateFile, trackingUri: options.trackingUri }, 'serving plane started');
      return baseUrl;
    },
    flushPayloads(): Promise<void> {
      return payloads.flush();
    },
    close(): Promise<void> {
      closing ??= (async () => {
        store.cancelColdStarts();
        await app.close();
        await store.close();
        await payloads.close();
        await client.close();
        logger.info({ url: baseUrl }, 'serving plane stopped');
      })();
      return closing;
    },
  };
}

/** Sends every error as Databricks JSON `{error_code, message}` with a matching HTTP status. */
function registerErrorHandlers(app: FastifyInstance, logger: Logger): void {
  app.setErrorHandler((error, request, reply) => {
    const route = `${request.method} ${request.url}`;
    const { status, body } = toErrorResponse(error, route);
    if (status >= 500) logger.error({ route, status, errorCode: body.error_code, error: body.message }, 'request failed');
    else logger.info({ route, status, errorCode: body.error_code, error: body.message }, 'request rejected');
    return reply.code(status).send(body);
  });

  app.setNotFoundHandler((request, reply) => {
    const body: ErrorBody = {
      error_code: 'ENDPOINT_NOT_FOUND',
      message: `No API route for ${request.method} ${request.url}. The serving plane implements /api/2.0/serving-endpoints, /serving-endpoints/{name}/invocations, /serving-endpoints/{name}/served-models/{served_model_name}/invocations and /metrics.`,
    };
    return reply.code(404).send(body);
  });
}
