import type { Logger } from '../common/logger';
import { ServingError } from './errors';
import type { EntityLabels, ServingMetrics } from './metrics';
import {
  DEFAULT_READY_TIMEOUT_MS,
  modelServerLogFile,
  modelUri,
  type ModelServerHandle,
  type ModelServerLauncher,
  type ModelServerSpec,
} from './model-server';
import type { ServerSlot } from './server-slot';
import { WORKERS_BY_WORKLOAD_SIZE, type ServedEntitySpec } from './types';

/**
 * Scale to zero of served entities: stopping model servers that ran idle and starting them again on
 * the next invocation (a cold start). The endpoint store decides which slots may scale to zero, and
 * this module does the stopping and starting.
 */

export const DEFAULT_SCALE_TO_ZERO_IDLE_MS = 30 * 60 * 1000;

export interface ScaleToZeroOptions {
  launcher: ModelServerLauncher;
  logger: Logger;
  metrics: ServingMetrics;
  /** Folder of the model server log files, named in cold start errors. */
  logsDir: string;
  /** Time in ms without invocations after which a slot is scaled to zero (default 30 minutes). */
  idleMs?: number;
  /** Maximum time in ms for a cold start (default DEFAULT_READY_TIMEOUT_MS). */
  coldStartTimeoutMs?: number;
}

/** A model server that is ready for one invocation. */
export interface ModelServerConnection {
  url: string;
  /** Time in ms that this invocation waited for a cold start, or undefined when the server was running. */
  coldStartMs?: number;
}

/** The served entity whose invocation triggers a cold start, with callbacks into the endpoint store. */
export interface ColdStartRequest {
  endpoint: string;
  spec: ServedEntitySpec;
  slot: ServerSlot;
  labels: EntityLabels;
  /** True once the endpoint was deleted, so a late start does not record metrics. */
  endpointDeleted(): boolean;
  /** Called with the new process before any invocation uses it, to watch its exit. */
  onStarted(handle: ModelServerHandle): void;
}

/** A slot that may be scaled to zero, with the served entity named in the log. */
export interface ScaleToZeroCandidate {
  endpoint: string;
  servedEntity: string;
  slot: ServerSlot;
}

export class ScaleToZero {
  readonly idleMs: number;
  private readonly coldStartTimeoutMs: number;
  private readonly logger: Logger;

  constructor(private readonly options: ScaleToZeroOptions) {
    this.idleMs = options.idleMs ?? DEFAULT_SCALE_TO_ZERO_IDLE_MS;
    if (!(this.idleMs > 0 && Number.isFinite(this.idleMs))) {
      throw new RangeError(`Invalid scaleToZeroIdleMs ${this.idleMs}: expected a finite number of milliseconds greater than 0.`);
    }
    this.coldStartTimeoutMs = options.coldStartTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
    this.logger = options.logger;
  }

  /**
   * Starts the model server of a scaled-to-zero slot, or joins the start already in progress, so
   * concurrent invocations share one cold start. Throws 503 TEMPORARILY_UNAVAILABLE with the reason
   * and the log file when the start fails. The slot then stays scaled to zero, and the next
   * invocation tries again.
   */
  async connect(request: ColdStartRequest): Promise<ModelServerConnection> {
    const waitStartedAt = performance.now();
    const slot = request.slot;
    if (!slot.coldStart) {
      const abort = new AbortController();
      const promise = this.start(request, abort).finally(() => {
        slot.coldStart = undefined;
      });
      // Every waiting invocation handles the rejection. This stops Node from reporting it as unhandled
      // when no invocation waits any more.
      promise.catch(() => undefined);
      slot.coldStart = { promise, abort };
    }
    const handle = await slot.coldStart.promise;
    return { url: handle.url, coldStartMs: Math.round(performance.now() - waitStartedAt) };
  }

  /**
   * Stops the model servers of the candidates that ran idle for `idleMs` and returns the stops, which
   * the caller tracks. A stop failure is logged, not thrown.
   */
  stopIdle(candidates: Iterable<ScaleToZeroCandidate>, now = Date.now()): Array<Promise<void>> {
    const stops: Array<Promise<void>> = [];
    for (const { endpoint, servedEntity, slot } of candidates) {
      if (!slot.idleFor(this.idleMs, now)) continue;
      const { url, pid } = slot.handle as ModelServerHandle;
      this.logger.info({ endpoint, servedEntity, idleMs: now - slot.lastActivityAt, url, pid }, 'scaled to zero');
      stops.push(
        slot.scaleToZero().catch((error: unknown) => {
          this.logger.error({ endpoint, servedEntity, url, pid, error: errorMessage(error) }, 'failed to stop idle model server');
        }),
      );
    }
    return stops;
  }

  /**
   * Returns the deployment_state_message of a ready entity whose slot was scaled to zero or started
   * again since, or undefined when the message of its deployment still holds.
   */
  describe(slot: ServerSlot, spec: ServedEntitySpec): string | undefined {
    const uri = modelUri(spec.entity_name, spec.entity_version);
    if (slot.restartingAfterCrash) {
      const failure = slot.lastColdStartFailure ? ` The last restart failed: ${slot.lastColdStartFailure}` : '';
      const next = slot.coldStart ? 'It is restarting.' : 'The next invocation restarts it.';
      return `${slot.restartingAfterCrash} ${next}${failure}`;
    }
    if (slot.coldStart) return `Scaled to zero. An invocation is starting the model server for ${uri}.`;
    if (!slot.handle) {
      const since = slot.scaledToZeroAt === undefined ? '' : ` since ${new Date(slot.scaledToZeroAt).toISOString()}`;
      const failure = slot.lastColdStartFailure ? ` The last start failed: ${slot.lastColdStartFailure}` : '';
      return `Scaled to zero${since} after ${this.idleMs / 1000} s without invocations. The next invocation starts the model server for ${uri}.${failure}`;
    }
    if (slot.lastStart === 'restart') {
      return `Model server for ${uri} is ready at ${slot.handle.url} (pid ${slot.handle.pid}), restarted by the serving plane after its previous process exited unexpectedly (restart ${slot.restarts}).`;
    }
    if (slot.lastStart === 'cold start') {
      return `Model server for ${uri} is ready at ${slot.handle.url} (pid ${slot.handle.pid}), started again by an invocation after scale to zero.`;
    }
    return undefined;
  }

  private async start(request: ColdStartRequest, abort: AbortController): Promise<ModelServerHandle> {
    const { endpoint, spec, slot } = request;
    const uri = modelUri(spec.entity_name, spec.entity_version);
    const logFile = modelServerLogFile(this.options.logsDir, endpoint, spec.name);
    const context = { endpoint, servedEntity: spec.name, modelUri: uri };
    const restart = slot.restartingAfterCrash !== undefined;
    if (restart) this.logger.info(context, 'restarting a crashed model server');
    else this.logger.info({ ...context, scaledToZeroAt: slot.scaledToZeroAt }, 'starting a scaled-to-zero model server');

    const startedAt = performance.now();
    let handle: ModelServerHandle;
    try {
      handle = await this.startWithin(abort, {
        endpoint,
        servedEntityName: spec.name,
        entityName: spec.entity_name,
        entityVersion: spec.entity_version,
        workers: WORKERS_BY_WORKLOAD_SIZE[spec.workload_size],
        signal: abort.signal,
      });
    } catch (error) {
      const reason = slot.stopped
        ? 'the served entity was replaced or its endpoint deleted while its model server was starting.'
        : asSentence(errorMessage(error));
      slot.lastColdStartFailure = reason;
      this.logger.error({ ...context, error: reason, logFile }, 'cold start failed');
      const state = restart ? 'crashed, and the restart of its model server failed' : 'is scaled to zero and its model server failed to start';
      const next = slot.stopped ? '' : ' The next invocation tries to start it again.';
      throw new ServingError('TEMPORARILY_UNAVAILABLE', `Served entity ${spec.name} of endpoint ${endpoint} ${state}: ${reason} See the model server log ${logFile}.${next}`);
    }

    if (slot.stopped) {
      await handle.stop();
      throw new ServingError(
        'TEMPORARILY_UNAVAILABLE',
        `Served entity ${spec.name} of endpoint ${endpoint} was replaced or its endpoint deleted during its cold start. Retry the invocation.`,
      );
    }
    const durationMs = performance.now() - startedAt;
    slot.attach(handle);
    request.onStarted(handle);
    if (!request.endpointDeleted()) this.options.metrics.recordColdStart(request.labels, durationMs / 1000);
    this.logger.info({ ...context, durationMs: Math.round(durationMs), url: handle.url, pid: handle.pid }, restart ? 'model server restarted' : 'cold start');
    return handle;
  }

  /**
   * Runs launcher.start and rejects after coldStartTimeoutMs or when `abort` fires, whichever comes
   * first. A server that becomes ready after that is stopped, so no process is left without a slot.
   */
  private async startWithin(abort: AbortController, spec: ModelServerSpec): Promise<ModelServerHandle> {
    const timeoutMs = this.coldStartTimeoutMs;
    const timer = setTimeout(
      () => abort.abort(new Error(`The model server did not become ready within ${timeoutMs} ms.`)),
      timeoutMs,
    );
    const starting = this.options.launcher.start(spec);
    try {
      return await new Promise<ModelServerHandle>((resolve, reject) => {
        const onAbort = (): void => {
          const reason: unknown = abort.signal.reason;
          reject(reason instanceof Error ? reason : new Error('The start was canceled.'));
        };
        if (abort.signal.aborted) onAbort();
        abort.signal.addEventListener('abort', onAbort, { once: true });
        starting.then(resolve, reject).finally(() => abort.signal.removeEventListener('abort', onAbort));
      });
    } catch (error) {
      starting.then((late) => late.stop()).catch(() => undefined);
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Ends a message with a period unless it already ends with punctuation, so a sentence can follow it. */
function asSentence(message: string): string {
  return /[.!?]$/.test(message.trimEnd()) ? message.trimEnd() : `${message.trimEnd()}.`;
}
