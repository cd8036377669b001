import path from 'node:path';
import { modelServerPidDir, reapModelServers } from './orphans';
import axios from 'axios';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import type { Logger } from '../common/logger';
import { EndpointStore } from './endpoints';
import { endpointNotFound, ServingError, type ErrorBody } from './errors';
import { MlflowModelServerLauncher, type ModelServerLauncher } from './model-server';
import {
  countInvocationRecords,
  parseCreateEndpointRequest,
  parseInvocationRequest,
  parseUpdateConfigRequest,
} from './validation';

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
  /** Maximum time in ms for a model server to become ready. Only the default launcher uses it. */
  readyTimeoutMs?: number;
  /** Maximum time in ms to wait for a model server's response to one invocation (default 120 000). */
  invocationTimeoutMs?: number;
  /** Maximum time in ms that a replaced model server may finish invocations in flight (default 60 000). */
  drainTimeoutMs?: number;
}

export interface ServingPlane {
  app: FastifyInstance;
  /** Starts listening and returns the base URL, such as `http://127.0.0.1:8080`. */
  listen(): Promise<string>;
  /** Stops accepting requests, then stops every model server. Safe to call more than once. */
  close(): Promise<void>;
}

/** Maximum request body in bytes. Invocations with large dataframes need more than Fastify's 1 MiB default. */
const BODY_LIMIT_BYTES = 16 * 1024 * 1024;
// `mlflow models serve` (mlflow 3.17) cancels a request after 60 s by default (its --timeout), so
// this leaves room for its own timeout error to reach the client.
const DEFAULT_INVOCATION_TIMEOUT_MS = 120_000;

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
  const launcher =
    options.launcher ??
    new MlflowModelServerLauncher({
      trackingUri: options.trackingUri,
      logsDir: path.join(options.stateDir, 'logs'),
      pidDir,
      logger,
      readyTimeoutMs: options.readyTimeoutMs,
    });
  const store = new EndpointStore({
    launcher,
    logger,
    stateFile,
    baseUrl: () => baseUrl,
    drainTimeoutMs: options.drainTimeoutMs,
  });
  const invocationTimeoutMs = options.invocationTimeoutMs ?? DEFAULT_INVOCATION_TIMEOUT_MS;

  // Typed as Fastify's logger interface so that the app keeps the default FastifyInstance type.
  const loggerInstance: FastifyBaseLogger = logger;
  // Per-request logs are off because clients poll GET endpoints. The store logs every change, and
  // the invocation route logs one line per invocation.
  const app = Fastify({
    loggerInstance,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT_BYTES,
  });
  registerErrorHandlers(app, logger);

  app.get('/health', async () => ({ status: 'ok' }));

  app.post('/api/2.0/serving-endpoints', async (request) => store.create(parseCreateEndpointRequest(request.body)));

  app.get('/api/2.0/serving-endpoints', async () => ({ endpoints: store.list() }));

  app.get<NameParams>('/api/2.0/serving-endpoints/:name', async (request) => store.get(request.params.name));

  app.put<NameParams>('/api/2.0/serving-endpoints/:name/config', async (request) => {
    const name = request.params.name;
    if (!store.exists(name)) throw endpointNotFound(name);
    return store.updateConfig(name, parseUpdateConfigRequest(request.body));
  });

  app.delete<NameParams>('/api/2.0/serving-endpoints/:name', async (request) => {
    await store.delete(request.params.name);
    return {};
  });

  app.post<NameParams>('/serving-endpoints/:name/invocations', async (request, reply) => {
    const name = request.params.name;
    if (!store.exists(name)) throw endpointNotFound(name);
    const invocation = parseInvocationRequest(request.body);
    const target = store.acquireServedEntity(name);
    const context = {
      endpoint: name,
      servedEntity: target.servedEntityName,
      inputKey: invocation.inputKey,
      records: countInvocationRecords(invocation),
    };

    const startedAt = Date.now();
    try {
      const response = await axios.post<ArrayBuffer>(`${target.url}/invocations`, JSON.stringify(invocation.body), {
        headers: { 'Content-Type': 'application/json' },
        responseType: 'arraybuffer',
        timeout: invocationTimeoutMs,
        validateStatus: () => true,
        maxBodyLength: Infinity,
        maxContentLength: Infinity,
        // Model servers listen on loopback, so an HTTP_PROXY from the environment must not apply.
        proxy: false,
      });
      logger.info({ ...context, status: response.status, durationMs: Date.now() - startedAt }, 'invocation');
      return sendUpstreamResponse(reply, target.servedEntityName, response.status, response.headers['content-type'], response.data);
    } catch (error) {
      throw upstreamFailure(error, name, target.servedEntityName, target.url, invocationTimeoutMs, logger, context);
    } finally {
      target.release();
    }
  });

  store.restore();

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
    close(): Promise<void> {
      closing ??= (async () => {
        await app.close();
        await store.close();
        logger.info({ url: baseUrl }, 'serving plane stopped');
      })();
      return closing;
    },
  };
}

function sendUpstreamResponse(
  reply: FastifyReply,
  servedEntityName: string,
  status: number,
  contentType: unknown,
  body: ArrayBuffer,
): FastifyReply {
  return reply
    .code(status)
    .header('served-model-name', servedEntityName)
    .header('content-type', typeof contentType === 'string' ? contentType : 'application/json')
    .send(Buffer.from(body));
}

/** Maps a failed request to a model server to 504 DEADLINE_EXCEEDED or 503 TEMPORARILY_UNAVAILABLE. */
function upstreamFailure(
  error: unknown,
  endpoint: string,
  servedEntityName: string,
  url: string,
  timeoutMs: number,
  logger: Logger,
  context: Record<string, unknown>,
): ServingError {
  const code = axios.isAxiosError(error) ? error.code : undefined;
  const detail = error instanceof Error ? error.message : String(error);
  logger.error({ ...context, url, errorCode: code, error: detail }, 'invocation failed');

  if (code === 'ECONNABORTED' || code === 'ETIMEDOUT') {
    return new ServingError(
      'DEADLINE_EXCEEDED',
      `Served entity ${servedEntityName} of endpoint ${endpoint} did not respond within ${timeoutMs} ms. Retry with fewer records per request.`,
    );
  }
  return new ServingError(
    'TEMPORARILY_UNAVAILABLE',
    `Served entity ${servedEntityName} of endpoint ${endpoint} is unreachable at ${url} (${detail}). Retry, and check the model server log under <stateDir>/logs if it persists.`,
  );
}

/** Sends every error as Databricks JSON `{error_code, message}` with a matching HTTP status. */
function registerErrorHandlers(app: FastifyInstance, logger: Logger): void {
  app.setErrorHandler((error: FastifyError | ServingError, request, reply) => {
    const route = `${request.method} ${request.url}`;
    let status: number;
    let body: ErrorBody;

    if (error instanceof ServingError) {
      status = error.statusCode;
      body = error.toBody();
    } else if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
      // Fastify's own rejections: invalid JSON, unsupported content type, body too large.
      status = error.statusCode;
      body = { error_code: 'BAD_REQUEST', message: `Invalid request: ${error.message}` };
    } else {
      status = 500;
      body = { error_code: 'INTERNAL_ERROR', message: `Internal error while handling ${route}: ${error.message}` };
    }

    if (status >= 500) logger.error({ route, status, errorCode: body.error_code, error: error.message }, 'request failed');
    else logger.info({ route, status, errorCode: body.error_code, error: body.message }, 'request rejected');
    return reply.code(status).send(body);
  });

  app.setNotFoundHandler((request, reply) => {
    const body: ErrorBody = {
      error_code: 'ENDPOINT_NOT_FOUND',
      message: `No API route for ${request.method} ${request.url}. The serving plane implements /api/2.0/serving-endpoints and /serving-endpoints/{name}/invocations.`,
    };
    return reply.code(404).send(body);
  });
}
