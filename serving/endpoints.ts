import { randomUUID } from 'node:crypto';
import type { Logger } from '../common/logger';
import { qualifiedName, type TableName } from '../platform/catalog/port';
import { readEndpointFile, writeEndpointFile, type StoredConfig, type StoredEndpoint } from './endpoint-file';
import { endpointNotFound, invalidParameter, ServingError } from './errors';
import { DEFAULT_MAX_MODEL_SERVERS } from './limits';
import type { ServingFaults } from './faults';
import { payloadTable } from './inference-table';
import type { EntityLabels } from './metrics';
import { modelUri, type ModelServerHandle, type ModelServerLauncher } from './model-server';
import type { ColdStartRequest, ModelServerConnection, ScaleToZero, ScaleToZeroCandidate } from './scale-to-zero';
import { ServerSlot } from './server-slot';
import {
  WORKERS_BY_WORKLOAD_SIZE,
  type AiGateway,
  type ConfigUpdateState,
  type DeploymentState,
  type EndpointConfigOutput,
  type EndpointConfigSpec,
  type EndpointTag,
  type ServedEntitySpec,
  type EndpointHeader,
  type ServingEndpointDetailed,
  type ServingEndpointSummary,
  type TrafficRoute,
} from './types';
import type { CreateEndpointInput } from './validation';

/**
 * Endpoint state machine and store, independent of HTTP.
 *
 * Each endpoint has an active config and, during an update, a pending config. Both create and a
 * restart deploy the active config itself (ready NOT_READY, config_update IN_PROGRESS). An update
 * deploys the pending config while the active one keeps serving, then swaps them once every new
 * model server is ready. Only one deployment per endpoint runs at a time, which is why an update
 * during IN_PROGRESS is rejected with RESOURCE_CONFLICT.
 */

export interface EndpointStoreOptions {
  launcher: ModelServerLauncher;
  logger: Logger;
  /** Path of the endpoint definitions file, normally `<stateDir>/serving/endpoints.json`. */
  stateFile: string;
  /** Returns the base URL of the serving plane, used to build `endpoint_url`. */
  baseUrl: () => string;
  /**
   * Maximum time in ms that a replaced model server keeps running to finish invocations already sent
   * to it (default 60 000). The default matches the default request timeout of `mlflow models serve`.
   */
  drainTimeoutMs?: number;
  /** Returns a number in [0, 1) for weighted traffic routing (default Math.random). */
  random?: () => number;
  /** Stops idle model servers and starts them again on the next invocation. */
  scaleToZero: ScaleToZero;
  /**
   * Maximum number of model servers that the endpoints' configs may need at once (default 16). Each one
   * is a Python process with its model in memory, so without a limit a client that creates endpoints in a loop
   * exhausts the machine. A create or update beyond it gets 429 RESOURCE_EXHAUSTED.
   */
  maxModelServers?: number;
  faults?: ServingFaults;
}

/** A served entity picked for one invocation. Call release() when the request has finished. */
export interface InvocationTarget {
  servedEntityName: string;
  labels: EntityLabels;
  /** Returns the running model server, after starting it when the served entity is scaled to zero. */
  connect(): Promise<ModelServerConnection>;
  /** True once the endpoint was deleted, so late metrics do not bring back its series. */
  endpointDeleted(): boolean;
  release(): void;
}

const DEFAULT_DRAIN_TIMEOUT_MS = 60_000;
/** Restarts of a crashed model server within CRASH_WINDOW_MS before its entity is marked failed. */
const MAX_CRASH_RESTARTS = 3;
const CRASH_WINDOW_MS = 10 * 60_000;
/** Maximum time in ms between two checks for idle model servers. */
const MAX_IDLE_CHECK_INTERVAL_MS = 60_000;
const CREATOR = 'local';

interface EntityRuntime {
  spec: ServedEntitySpec;
  deployment: DeploymentState;
  message: string;
  slot?: ServerSlot;
  /** Metric labels, built on the first invocation. */
  labels?: EntityLabels;
}

interface ConfigRuntime {
  version: number;
  /** Time the deployment of this config was requested, in ms since the Unix epoch. */
  startTime: number;
  entities: EntityRuntime[];
  routes: TrafficRoute[];
}

interface EndpointRuntime {
  name: string;
  id: string;
  creationTimestamp: number;
  lastUpdatedTimestamp: number;
  tags: EndpointTag[];
  aiGateway?: AiGateway;
  /** The payload table that invocations are logged to, derived from `aiGateway`, or undefined when logging is disabled. */
  payloadTable?: TableName;
  config: ConfigRuntime;
  pending?: ConfigRuntime;
  configUpdate: ConfigUpdateState;
  stateMessage?: string;
  /** Reason that a restart dropped a pending update, reported as UPDATE_FAILED once the config is ready. */
  interruptedUpdateMessage?: string;
  /** The config whose model servers are starting, with the controller that cancels those starts. */
  deployment?: { config: ConfigRuntime; abort: AbortController };
  deleted: boolean;
}

function newConfigRuntime(spec: EndpointConfigSpec, version: number, startTime: number): ConfigRuntime {
  return {
    version,
    startTime,
    routes: spec.routes.map((route) => ({ ...route })),
    entities: spec.served_entities.map((entity) => ({
      spec: { ...entity },
      deployment: 'DEPLOYMENT_CREATING',
      message: `Starting a model server for ${modelUri(entity.entity_name, entity.entity_version)}.`,
    })),
  };
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** True when two served entities run the same model version with the same number of workers. */
function sameModelServer(a: ServedEntitySpec, b: ServedEntitySpec): boolean {
  return a.entity_name === b.entity_name && a.entity_version === b.entity_version && a.workload_size === b.workload_size;
}

/** True when an entity can take invocations: deployed, with a slot that is running or scaled to zero. */
/** Returns the metric labels of a served entity, built once. */
function labelsOf(endpoint: EndpointRuntime, entity: EntityRuntime): EntityLabels {
  entity.labels ??= {
    endpoint: endpoint.name,
    served_entity: entity.spec.name,
    entity_name: entity.spec.entity_name,
    entity_version: entity.spec.entity_version,
  };
  return entity.labels;
}

function isServing(entity: EntityRuntime): boolean {
  return entity.deployment === 'DEPLOYMENT_READY' && entity.slot?.usable === true;
}

/** URL and pid of a slot's process for logs. Both are undefined while the slot is scaled to zero. */
function describeSlot(slot: ServerSlot): { url?: string; pid?: number } {
  return { url: slot.handle?.url, pid: slot.handle?.pid };
}

function cloneAiGateway(aiGateway: AiGateway): AiGateway {
  return aiGateway.inference_table_config ? { inference_table_config: { ...aiGateway.inference_table_config } } : {};
}

export class EndpointStore {
  private readonly endpoints = new Map<string, EndpointRuntime>();
  /** Every slot that was neither stopped nor crashed, whether running or scaled to zero, for close(). */
  private readonly liveSlots = new Set<ServerSlot>();
  /** Background deployments and server retirements, awaited by close(). */
  private readonly tasks = new Set<Promise<void>>();
  private readonly logger: Logger;
  private readonly drainTimeoutMs: number;
  private readonly random: () => number;
  private readonly scaleToZero: ScaleToZero;
  private readonly maxModelServers: number;
  private readonly idleCheckTimer: NodeJS.Timeout;
  private closing = false;

  constructor(private readonly options: EndpointStoreOptions) {
    this.logger = options.logger;
    this.drainTimeoutMs = options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS;
    this.random = options.random ?? Math.random;
    this.scaleToZero = options.scaleToZero;
    this.maxModelServers = options.maxModelServers ?? DEFAULT_MAX_MODEL_SERVERS;
    if (!Number.isInteger(this.maxModelServers) || this.maxModelServers < 1) {
      throw new RangeError(`Invalid maxModelServers ${this.maxModelServers}: expected a whole number of at least 1.`);
    }
    // A tenth of the idle time keeps the stop within 10 % of it, and the bounds keep the checks cheap.
    const checkIntervalMs = Math.min(Math.max(this.scaleToZero.idleMs / 10, 10), MAX_IDLE_CHECK_INTERVAL_MS);
    this.idleCheckTimer = setInterval(() => this.scaleIdleServersToZero(), checkIntervalMs);
    this.idleCheckTimer.unref();
  }

  /**
   * Loads the endpoint definitions file and starts the model servers of every active config.
   * A pending update found in the file was interrupted by a restart, so it is dropped and reported
   * as UPDATE_FAILED. Throws if the file is unreadable or invalid.
   */
  restore(): void {
    const stored = readEndpointFile(this.options.stateFile);
    let droppedUpdates = 0;
    const now = Date.now();

    for (const record of stored) {
      const config = newConfigRuntime(
        { served_entities: record.config.served_entities, routes: record.config.traffic_config.routes },
        record.config.config_version,
        now,
      );
      const endpoint: EndpointRuntime = {
        name: record.name,
        id: record.id,
        creationTimestamp: record.creation_timestamp,
        lastUpdatedTimestamp: record.last_updated_timestamp,
        tags: record.tags,
        config,
        configUpdate: 'IN_PROGRESS',
        deleted: false,
      };
      if (record.ai_gateway) this.applyAiGateway(endpoint, record.ai_gateway);
      if (record.pending_config) {
        droppedUpdates += 1;
        const startedAt = new Date(record.pending_config.start_time).toISOString();
        endpoint.interruptedUpdateMessage =
          `The update to config version ${record.pending_config.config_version} (started ${startedAt}) was interrupted ` +
          `by a restart of the serving plane and was dropped. Config version ${config.version} is serving. Send the config update again.`;
        this.logger.warn(
          { endpoint: record.name, configVersion: config.version, droppedConfigVersion: record.pending_config.config_version },
          'dropped a config update interrupted by a restart',
        );
      }
      this.endpoints.set(endpoint.name, endpoint);
      this.logger.info({ endpoint: endpoint.name, configVersion: config.version }, 'restoring endpoint');
      this.track(this.deployActiveConfig(endpoint));
    }

    if (droppedUpdates > 0) this.persistInBackground();
    this.logger.info({ endpoints: stored.length, file: this.options.stateFile }, 'restored endpoint definitions');
  }

  list(): ServingEndpointSummary[] {
    return [...this.endpoints.values()].map((endpoint) => ({
      ...this.toHeader(endpoint),
      config: {
        served_entities: endpoint.config.entities.map(({ spec }) => ({
          name: spec.name,
          entity_name: spec.entity_name,
          entity_version: spec.entity_version,
        })),
      },
      tags: endpoint.tags.map((tag) => ({ ...tag })),
    }));
  }

  exists(name: string): boolean {
    return this.endpoints.has(name);
  }

  /** Returns the detailed view of one endpoint. Throws 404 RESOURCE_DOES_NOT_EXIST. */
  get(name: string): ServingEndpointDetailed {
    return this.toDetailed(this.require(name));
  }

  /**
   * Registers a new endpoint, persists it and starts its model servers in the background.
   * Throws 409 RESOURCE_ALREADY_EXISTS if the name is taken.
   */
  create(input: CreateEndpointInput): ServingEndpointDetailed {
    this.assertOpen();
    if (this.endpoints.has(input.name)) {
      throw new ServingError(
        'RESOURCE_ALREADY_EXISTS',
        `Serving endpoint ${JSON.stringify(input.name)} already exists. Choose another name, or update its config with PUT /api/2.0/serving-endpoints/${input.name}/config.`,
      );
    }

    this.assertModelServerBudget(input.name, input.config.served_entities.length);
    const now = Date.now();
    const endpoint: EndpointRuntime = {
      name: input.name,
      id: randomUUID().replace(/-/g, ''),
      creationTimestamp: now,
      lastUpdatedTimestamp: now,
      tags: input.tags.map((tag) => ({ ...tag })),
      config: newConfigRuntime(input.config, 1, now),
      configUpdate: 'IN_PROGRESS',
      deleted: false,
    };
    if (input.aiGateway) this.applyAiGateway(endpoint, input.aiGateway);

    this.endpoints.set(endpoint.name, endpoint);
    try {
      this.persist();
    } catch (error) {
      this.endpoints.delete(endpoint.name);
      throw error;
    }

    this.logger.info(
      { endpoint: endpoint.name, configVersion: 1, servedEntities: this.describeEntities(endpoint.config) },
      'endpoint created',
    );
    this.track(this.deployActiveConfig(endpoint));
    return this.toDetailed(endpoint);
  }

  /**
   * Starts replacing the config of an endpoint. The active config keeps serving until every model
   * server of the new config is ready. Throws 404 RESOURCE_DOES_NOT_EXIST, or 409 RESOURCE_CONFLICT
   * while another deployment of the endpoint is in progress.
   */
  updateConfig(name: string, spec: EndpointConfigSpec): ServingEndpointDetailed {
    this.assertOpen();
    const endpoint = this.require(name);
    const injectedLeft = this.options.faults?.takeConfigUpdateRejection(name);
    if (injectedLeft !== undefined) {
      this.logger.warn({ endpoint: name, injectedConflictsLeft: injectedLeft }, 'injected config update conflict');
    }
    if (endpoint.configUpdate === 'IN_PROGRESS' || injectedLeft !== undefined) {
      const version = endpoint.pending?.version ?? endpoint.config.version;
      throw new ServingError(
        'RESOURCE_CONFLICT',
        `Endpoint ${name} is currently updating its served entities (config version ${version}). Wait for the update to finish before sending another config update.`,
      );
    }

    const now = Date.now();
    const pending = newConfigRuntime(spec, endpoint.config.version + 1, now);
    this.reuseUnchangedServers(endpoint.config, pending);
    this.assertModelServerBudget(name, pending.entities.filter((entity) => !entity.slot).length);

    const previous = {
      configUpdate: endpoint.configUpdate,
      stateMessage: endpoint.stateMessage,
      lastUpdatedTimestamp: endpoint.lastUpdatedTimestamp,
    };
    endpoint.pending = pending;
    endpoint.configUpdate = 'IN_PROGRESS';
    endpoint.stateMessage = undefined;
    endpoint.lastUpdatedTimestamp = now;
    try {
      this.persist();
    } catch (error) {
      endpoint.pending = undefined;
      Object.assign(endpoint, previous);
      throw error;
    }

    this.logger.info(
      {
        endpoint: name,
        configVersion: pending.version,
        activeConfigVersion: endpoint.config.version,
        servedEntities: this.describeEntities(pending),
      },
      'endpoint config update started',
    );
    this.track(this.deployPendingConfig(endpoint, pending));
    return this.toDetailed(endpoint);
  }

  /**
   * Replaces the AI gateway config of an endpoint and returns it. Throws 404 RESOURCE_DOES_NOT_EXIST,
   * or 400 INVALID_PARAMETER_VALUE when an enabled inference table would move to another table.
   * Like Databricks, the plane lets the table change only while logging is disabled.
   */
  setAiGateway(name: string, aiGateway: AiGateway): AiGateway {
    this.assertOpen();
    const endpoint = this.require(name);
    const current = endpoint.aiGateway?.inference_table_config;
    const next = aiGateway.inference_table_config;
    if (current?.enabled && next?.enabled) {
      for (const field of ['catalog_name', 'schema_name', 'table_name_prefix'] as const) {
        if (current[field] !== next[field]) {
          throw invalidParameter(
            `Invalid inference_table_config.${field} ${JSON.stringify(next[field])}: the inference table of endpoint ${name} is enabled with ${field} ${JSON.stringify(current[field])}. Disable it first, then enable it with the new table.`,
          );
        }
      }
    }

    const previous = { aiGateway: endpoint.aiGateway, payloadTable: endpoint.payloadTable, lastUpdatedTimestamp: endpoint.lastUpdatedTimestamp };
    this.applyAiGateway(endpoint, aiGateway);
    endpoint.lastUpdatedTimestamp = Date.now();
    try {
      this.persist();
    } catch (error) {
      Object.assign(endpoint, previous);
      throw error;
    }
    this.logger.info(
      { endpoint: name, payloadTable: endpoint.payloadTable ? qualifiedName(endpoint.payloadTable) : undefined },
      'endpoint AI gateway updated',
    );
    return cloneAiGateway(aiGateway);
  }

  /** Returns the payload table that invocations of the endpoint are logged to, or undefined. */
  payloadTableOf(name: string): TableName | undefined {
    return this.endpoints.get(name)?.payloadTable;
  }

  /** Returns each endpoint's name with true when its state.ready is READY. */
  *readyStates(): Iterable<[string, boolean]> {
    for (const endpoint of this.endpoints.values()) yield [endpoint.name, this.readyState(endpoint) === 'READY'];
  }

  /** Removes an endpoint and stops its model servers. Throws 404 RESOURCE_DOES_NOT_EXIST. */
  async delete(name: string): Promise<void> {
    this.assertOpen();
    const endpoint = this.require(name);

    this.endpoints.delete(name);
    try {
      this.persist();
    } catch (error) {
      this.endpoints.set(name, endpoint);
      throw error;
    }
    endpoint.deleted = true;
    endpoint.deployment?.abort.abort();

    this.logger.info({ endpoint: name, configVersion: endpoint.config.version }, 'endpoint deleted');
    await this.stopSlots(this.slotsOf(endpoint), 'endpoint deleted');
  }

  /**
   * Picks a ready served entity of the active config and counts the invocation as in flight on it
   * until release(). Without `servedEntityName` the pick follows the traffic routes (weighted random).
   * With it, that served entity is used whatever its traffic percentage. Throws 404
   * RESOURCE_DOES_NOT_EXIST for an unknown endpoint or served entity, or 503 TEMPORARILY_UNAVAILABLE
   * when no fitting served entity is ready.
   */
  acquireServedEntity(name: string, servedEntityName?: string): InvocationTarget {
    const endpoint = this.require(name);
    const entity = servedEntityName === undefined ? this.pickByRoutes(endpoint) : this.findServedEntity(endpoint, servedEntityName);
    const slot = entity.slot as ServerSlot;
    const labels = labelsOf(endpoint, entity);

    return {
      servedEntityName: entity.spec.name,
      labels,
      connect: () => {
        if (slot.handle) return Promise.resolve({ url: slot.handle.url });
        return this.scaleToZero.connect(this.coldStartRequest(endpoint, entity, slot));
      },
      endpointDeleted: () => endpoint.deleted,
      release: slot.acquire(),
    };
  }

  /** Returns what a cold start or restart of `slot` needs, with the callback that watches the new process. */
  private coldStartRequest(endpoint: EndpointRuntime, entity: EntityRuntime, slot: ServerSlot): ColdStartRequest {
    return {
      endpoint: endpoint.name,
      spec: entity.spec,
      slot,
      labels: labelsOf(endpoint, entity),
      endpointDeleted: () => endpoint.deleted,
      onStarted: (handle) => {
        this.liveSlots.add(slot);
        handle.onExit((code, signal) => this.handleServerExit(endpoint, slot, handle, code, signal));
      },
    };
  }

  private pickByRoutes(endpoint: EndpointRuntime): EntityRuntime {
    const candidates: Array<{ entity: EntityRuntime; weight: number }> = [];
    for (const route of endpoint.config.routes) {
      const entity = endpoint.config.entities.find((candidate) => candidate.spec.name === route.served_entity_name);
      if (entity && isServing(entity) && route.traffic_percentage > 0) {
        candidates.push({ entity, weight: route.traffic_percentage });
      }
    }

    if (candidates.length === 0) {
      const retry = `Retry when GET /api/2.0/serving-endpoints/${endpoint.name} reports state.ready READY.`;
      let message = `Endpoint ${endpoint.name} cannot serve invocations yet: its model servers are still starting. ${retry}`;
      if (endpoint.configUpdate !== 'IN_PROGRESS' || endpoint.pending) {
        // The state message of a failed entity names the fix, and retrying alone does not help.
        const reason = endpoint.stateMessage ?? `none of its served entities that receive traffic is ready. ${retry}`;
        message = `Endpoint ${endpoint.name} cannot serve invocations: ${reason}`;
      }
      throw new ServingError('TEMPORARILY_UNAVAILABLE', message);
    }

    const total = candidates.reduce((sum, candidate) => sum + candidate.weight, 0);
    let point = this.random() * total;
    for (const candidate of candidates) {
      point -= candidate.weight;
      if (point < 0) return candidate.entity;
    }
    return candidates[candidates.length - 1].entity;
  }

  private findServedEntity(endpoint: EndpointRuntime, servedEntityName: string): EntityRuntime {
    const entity = endpoint.config.entities.find((candidate) => candidate.spec.name === servedEntityName);
    if (!entity) {
      const known = endpoint.config.entities.map((candidate) => candidate.spec.name).join(', ');
      throw new ServingError(
        'RESOURCE_DOES_NOT_EXIST',
        `Served entity ${JSON.stringify(servedEntityName)} does not exist in the active config (version ${endpoint.config.version}) of endpoint ${endpoint.name}. Known served entities: ${known}.`,
      );
    }
    if (!isServing(entity)) {
      throw new ServingError(
        'TEMPORARILY_UNAVAILABLE',
        `Served entity ${servedEntityName} of endpoint ${endpoint.name} cannot serve invocations: ${entity.message} Retry when its state.deployment is DEPLOYMENT_READY.`,
      );
    }
    return entity;
  }

  /** Scales to zero the idle model servers whose served entities all have scale_to_zero_enabled. */
  private scaleIdleServersToZero(): void {
    if (this.closing) return;
    const candidates: ScaleToZeroCandidate[] = [];
    for (const endpoint of this.endpoints.values()) {
      // A slot shared by the active and the pending config scales to zero only if both entities allow it.
      const allowed = new Map<ServerSlot, { servedEntity: string; allowed: boolean }>();
      for (const config of endpoint.pending ? [endpoint.config, endpoint.pending] : [endpoint.config]) {
        for (const entity of config.entities) {
          if (!entity.slot) continue;
          const previous = allowed.get(entity.slot);
          const ok = entity.spec.scale_to_zero_enabled && entity.deployment === 'DEPLOYMENT_READY';
          allowed.set(entity.slot, {
            servedEntity: previous?.servedEntity ?? entity.spec.name,
            allowed: (previous?.allowed ?? true) && ok,
          });
        }
      }
      for (const [slot, { servedEntity, allowed: ok }] of allowed) {
        if (ok) candidates.push({ endpoint: endpoint.name, servedEntity, slot });
      }
    }
    for (const stop of this.scaleToZero.stopIdle(candidates)) this.track(stop);
  }

  /**
   * Cancels the cold starts in progress, so that invocations waiting for them fail with 503 at once
   * instead of holding up a shutdown for as long as a model server takes to start.
   */
  cancelColdStarts(): void {
    for (const slot of this.liveSlots) slot.coldStart?.abort.abort(new Error('the serving plane is shutting down'));
  }

  /**
   * Stops every model server and waits for the background deployments to end. Endpoint definitions
   * stay in the file as they were, so a pending update is reported as interrupted on the next start.
   */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.idleCheckTimer);
    for (const endpoint of this.endpoints.values()) endpoint.deployment?.abort.abort();
    await this.stopSlots([...this.liveSlots], 'serving plane closing');
    await Promise.allSettled([...this.tasks]);
    // Starts that resolved during the first round stop their own servers. This round catches any
    // server still running after the tasks ended.
    await this.stopSlots([...this.liveSlots], 'serving plane closing');
  }

  private applyAiGateway(endpoint: EndpointRuntime, aiGateway: AiGateway): void {
    endpoint.aiGateway = cloneAiGateway(aiGateway);
    endpoint.payloadTable = payloadTable(aiGateway.inference_table_config);
  }

  private require(name: string): EndpointRuntime {
    const endpoint = this.endpoints.get(name);
    if (!endpoint) throw endpointNotFound(name);
    return endpoint;
  }

  private assertOpen(): void {
    if (this.closing) {
      throw new ServingError('TEMPORARILY_UNAVAILABLE', 'The serving plane is shutting down. Retry after it has restarted.');
    }
  }

  private readyState(endpoint: EndpointRuntime): 'READY' | 'NOT_READY' {
    return endpoint.config.entities.every(isServing) ? 'READY' : 'NOT_READY';
  }

  /**
   * Model servers that the endpoints' configs need: one per served entity of each active config, whether
   * running or scaled to zero, plus one per pending entity that does not reuse an active server.
   */
  private modelServersNeeded(): number {
    let needed = 0;
    for (const endpoint of this.endpoints.values()) {
      needed += endpoint.config.entities.length;
      if (endpoint.pending) needed += endpoint.pending.entities.filter((entity) => entity.slot === undefined).length;
    }
    return needed;
  }

  /** Throws 429 RESOURCE_EXHAUSTED when `more` model servers for endpoint `name` would pass maxModelServers. */
  private assertModelServerBudget(name: string, more: number): void {
    const needed = this.modelServersNeeded();
    if (needed + more <= this.maxModelServers) return;
    this.logger.warn({ endpoint: name, needed, more, limit: this.maxModelServers }, 'model server limit reached');
    throw new ServingError(
      'RESOURCE_EXHAUSTED',
      `Endpoint ${name} needs ${more} more model server(s), but the endpoints already need ${needed} of the ` +
        `serving plane's limit of ${this.maxModelServers}. Delete endpoints you no longer use, or raise the limit ` +
        `with MLOPS_SERVING_MAX_MODEL_SERVERS.`,
    );
  }

  /** Lets the pending config take over model servers whose model version and size do not change. */
  private reuseUnchangedServers(active: ConfigRuntime, pending: ConfigRuntime): void {
    const claimed = new Set<ServerSlot>();
    for (const entity of pending.entities) {
      const match = active.entities.find(
        (old) =>
          old.slot?.usable === true &&
          old.deployment === 'DEPLOYMENT_READY' &&
          !claimed.has(old.slot) &&
          sameModelServer(old.spec, entity.spec),
      );
      if (!match?.slot) continue;
      claimed.add(match.slot);
      entity.slot = match.slot;
      entity.deployment = 'DEPLOYMENT_READY';
      const handle = match.slot.handle;
      entity.message = handle
        ? `Reusing the model server of served entity ${match.spec.name} at ${handle.url} (pid ${handle.pid}).`
        : `Reusing the scaled-to-zero model server of served entity ${match.spec.name}. The next invocation starts it.`;
    }
  }

  /** Deploys the active config after create or restart, while nothing serves yet. */
  private async deployActiveConfig(endpoint: EndpointRuntime): Promise<void> {
    const config = endpoint.config;
    const failure = await this.deployConfig(endpoint, config);
    if (endpoint.deleted || this.closing) return;

    endpoint.lastUpdatedTimestamp = Date.now();
    if (failure) {
      // abandonConfig marks the entities before its first await, so the state below is consistent.
      const stopping = this.abandonConfig(endpoint, config, new Set(), failure);
      endpoint.configUpdate = 'UPDATE_FAILED';
      endpoint.stateMessage = `Config version ${config.version} failed to deploy: ${failure}`;
      this.logger.error(
        { endpoint: endpoint.name, configVersion: config.version, error: failure },
        'endpoint deployment failed',
      );
      this.persistInBackground();
      await stopping;
      return;
    }

    if (endpoint.interruptedUpdateMessage) {
      endpoint.configUpdate = 'UPDATE_FAILED';
      endpoint.stateMessage = endpoint.interruptedUpdateMessage;
      endpoint.interruptedUpdateMessage = undefined;
      this.logger.info({ endpoint: endpoint.name, configVersion: config.version }, 'endpoint ready');
    } else {
      endpoint.configUpdate = 'NOT_UPDATING';
      endpoint.stateMessage = undefined;
      this.logger.info({ endpoint: endpoint.name, configVersion: config.version }, 'endpoint ready');
    }
    this.persistInBackground();
  }

  /** Deploys an update next to the active config, then swaps the two, or drops the update on failure. */
  private async deployPendingConfig(endpoint: EndpointRuntime, pending: ConfigRuntime): Promise<void> {
    const failure = await this.deployConfig(endpoint, pending);
    if (endpoint.deleted || this.closing || endpoint.pending !== pending) return;

    const active = endpoint.config;
    endpoint.lastUpdatedTimestamp = Date.now();
    if (failure) {
      const activeSlots = new Set(this.slotsOfConfig(active));
      endpoint.pending = undefined;
      endpoint.configUpdate = 'UPDATE_FAILED';
      endpoint.stateMessage = `The update to config version ${pending.version} failed and was dropped: ${failure} Config version ${active.version} keeps serving.`;
      this.logger.error(
        { endpoint: endpoint.name, configVersion: pending.version, activeConfigVersion: active.version, error: failure },
        'endpoint config update failed',
      );
      this.persistInBackground();
      await this.abandonConfig(endpoint, pending, activeSlots, failure);
      return;
    }

    endpoint.config = pending;
    endpoint.pending = undefined;
    endpoint.configUpdate = 'NOT_UPDATING';
    endpoint.stateMessage = undefined;
    this.logger.info(
      { endpoint: endpoint.name, configVersion: pending.version, previousConfigVersion: active.version },
      'endpoint config update finished',
    );
    this.persistInBackground();

    // The swap above is synchronous, so no new invocation can pick a replaced server from here on.
    const reusedSlots = new Set(this.slotsOfConfig(pending));
    const replaced = this.slotsOfConfig(active).filter((slot) => !reusedSlots.has(slot));
    await Promise.allSettled(replaced.map((slot) => this.retireSlot(endpoint.name, slot)));
  }

  /**
   * Starts a model server for every entity of `config` that has none. The first failure cancels
   * the other starts. Returns the reason for the failure, or undefined when every entity is ready.
   */
  private async deployConfig(endpoint: EndpointRuntime, config: ConfigRuntime): Promise<string | undefined> {
    const abort = new AbortController();
    const deployment = { config, abort };
    endpoint.deployment = deployment;
    let firstFailure: string | undefined;

    const startEntity = async (entity: EntityRuntime): Promise<void> => {
      const uri = modelUri(entity.spec.entity_name, entity.spec.entity_version);
      let handle: ModelServerHandle;
      try {
        handle = await this.options.launcher.start({
          endpoint: endpoint.name,
          servedEntityName: entity.spec.name,
          entityName: entity.spec.entity_name,
          entityVersion: entity.spec.entity_version,
          workers: WORKERS_BY_WORKLOAD_SIZE[entity.spec.workload_size],
          signal: abort.signal,
        });
      } catch (error) {
        if (abort.signal.aborted) {
          entity.deployment = 'DEPLOYMENT_ABORTED';
          entity.message = `The start of the model server for ${uri} was canceled.`;
          return;
        }
        const reason = errorMessage(error);
        entity.deployment = 'DEPLOYMENT_FAILED';
        entity.message = reason;
        firstFailure ??= `Served entity ${entity.spec.name} (${uri}) failed to start: ${reason}`;
        this.logger.error(
          { endpoint: endpoint.name, configVersion: config.version, servedEntity: entity.spec.name, modelUri: uri, error: reason },
          'model server failed to start',
        );
        abort.abort();
        return;
      }

      const slot = new ServerSlot(handle);
      this.liveSlots.add(slot);
      handle.onExit((code, signal) => this.handleServerExit(endpoint, slot, handle, code, signal));
      if (abort.signal.aborted) {
        entity.deployment = 'DEPLOYMENT_ABORTED';
        entity.message = `The model server for ${uri} started after its deployment was canceled, so it was stopped.`;
        await this.stopSlots([slot], 'deployment canceled');
        return;
      }
      entity.slot = slot;
      entity.deployment = 'DEPLOYMENT_READY';
      entity.message = `Model server for ${uri} is ready at ${handle.url} (pid ${handle.pid}).`;
    };

    await Promise.all(config.entities.filter((entity) => !entity.slot).map(startEntity));
    if (endpoint.deployment === deployment) endpoint.deployment = undefined;

    // A server that was ready may have exited while the others were still starting.
    const failed = config.entities.find((entity) => entity.deployment === 'DEPLOYMENT_FAILED');
    if (failed) return firstFailure ?? `Served entity ${failed.spec.name} failed: ${failed.message}`;
    const notReady = config.entities.find((entity) => entity.deployment !== 'DEPLOYMENT_READY');
    if (notReady) return `Served entity ${notReady.spec.name} did not become ready: ${notReady.message}`;
    return undefined;
  }

  /** Stops the servers of a failed config, except those in `keep`, and marks its ready entities aborted. */
  private async abandonConfig(
    endpoint: EndpointRuntime,
    config: ConfigRuntime,
    keep: Set<ServerSlot>,
    failure: string,
  ): Promise<void> {
    const toStop: ServerSlot[] = [];
    for (const entity of config.entities) {
      if (entity.deployment === 'DEPLOYMENT_READY') {
        entity.deployment = 'DEPLOYMENT_ABORTED';
        entity.message = `Stopped because the deployment failed: ${failure}`;
      }
      if (entity.slot && !keep.has(entity.slot)) toStop.push(entity.slot);
      entity.slot = undefined;
    }
    await this.stopSlots(toStop, `config version ${config.version} of endpoint ${endpoint.name} failed`);
  }

  private async retireSlot(endpointName: string, slot: ServerSlot): Promise<void> {
    const { url, pid } = describeSlot(slot);
    this.logger.info({ endpoint: endpointName, url, pid, inFlight: slot.inFlight }, 'stopping replaced model server');
    try {
      await slot.drainAndStop(this.drainTimeoutMs);
      this.liveSlots.delete(slot);
    } catch (error) {
      this.logger.error({ endpoint: endpointName, url, pid, error: errorMessage(error) }, 'failed to stop model server');
    }
  }

  private async stopSlots(slots: ServerSlot[], reason: string): Promise<void> {
    await Promise.all(
      slots.map(async (slot) => {
        const { url, pid } = describeSlot(slot);
        this.logger.info({ url, pid, reason }, 'stopping model server');
        try {
          await slot.stop();
          this.liveSlots.delete(slot);
        } catch (error) {
          this.logger.error({ url, pid, reason, error: errorMessage(error) }, 'failed to stop model server');
        }
      }),
    );
  }

  /**
   * Handles a model server that exited without the serving plane stopping it. A server of the serving
   * config is restarted at once, up to MAX_CRASH_RESTARTS times in CRASH_WINDOW_MS, and invocations wait
   * for the restart as for a cold start. After that, and for a server of a config still being deployed,
   * its entities are marked failed until the next config update.
   */
  private handleServerExit(
    endpoint: EndpointRuntime,
    slot: ServerSlot,
    handle: ModelServerHandle,
    code: number | null,
    signal: NodeJS.Signals | null,
  ): void {
    if (slot.stoppedOnPurpose(handle) || slot.handle !== handle) return;
    if (slot.retired || endpoint.deleted || this.closing) {
      slot.failed = true;
      this.liveSlots.delete(slot);
      return;
    }

    const { url, pid } = handle;
    const exit = `The model server at ${url} (pid ${pid}) exited unexpectedly with code ${code} (signal ${signal ?? 'none'})`;
    const deployment = endpoint.deployment;
    const active = endpoint.config.entities.find((entity) => entity.slot === slot && entity.deployment === 'DEPLOYMENT_READY');
    // A server of the serving config is restarted even when a pending config reuses it, so an update
    // in progress does not take the endpoint down. A new server of the pending config is not.
    const deploying = !active && deployment !== undefined && this.slotsOfConfig(deployment.config).includes(slot);
    const crashes = slot.detachCrashed(`${exit}.`, CRASH_WINDOW_MS);
    if (active && crashes <= MAX_CRASH_RESTARTS) {
      this.logger.error(
        { endpoint: endpoint.name, servedEntity: active.spec.name, url, pid, exitCode: code, signal, restart: crashes, maxRestarts: MAX_CRASH_RESTARTS },
        'model server exited unexpectedly; restarting it',
      );
      const restart = this.scaleToZero.connect(this.coldStartRequest(endpoint, active, slot));
      restart.catch(() => undefined); // Logged by the cold start; the next invocation tries again.
      return;
    }

    slot.failed = true;
    this.liveSlots.delete(slot);
    const advice = !active
      ? 'Check its log file, then send the config again.'
      : `It crashed ${crashes} times within ${CRASH_WINDOW_MS / 60_000} minutes, so it is not restarted again. Check its log file, then send the config again to restart it.`;
    const reason = `${exit}. ${advice}`;
    const configs = endpoint.pending ? [endpoint.config, endpoint.pending] : [endpoint.config];
    for (const config of configs) {
      for (const entity of config.entities) {
        if (entity.slot !== slot) continue;
        entity.deployment = 'DEPLOYMENT_FAILED';
        entity.message = reason;
        if (config === endpoint.config) endpoint.stateMessage = `Served entity ${entity.spec.name}: ${reason}`;
      }
    }
    // A config being deployed must not go live with a dead server, so its other starts are canceled.
    if (deploying) deployment.abort.abort();
    this.logger.error({ endpoint: endpoint.name, url, pid, exitCode: code, signal, crashes }, 'model server exited unexpectedly');
  }

  private slotsOfConfig(config: ConfigRuntime): ServerSlot[] {
    const slots = new Set<ServerSlot>();
    for (const entity of config.entities) if (entity.slot) slots.add(entity.slot);
    return [...slots];
  }

  private slotsOf(endpoint: EndpointRuntime): ServerSlot[] {
    const slots = new Set(this.slotsOfConfig(endpoint.config));
    if (endpoint.pending) for (const slot of this.slotsOfConfig(endpoint.pending)) slots.add(slot);
    return [...slots];
  }

  private track(task: Promise<void>): void {
    const tracked = task.catch((error: unknown) => {
      this.logger.error({ error: errorMessage(error) }, 'endpoint background task failed');
    });
    this.tasks.add(tracked);
    void tracked.finally(() => this.tasks.delete(tracked));
  }

  private describeEntities(config: ConfigRuntime): string[] {
    return config.entities.map(
      ({ spec }) => `${spec.name}=${modelUri(spec.entity_name, spec.entity_version)} (${spec.workload_size})`,
    );
  }

  /** Writes all endpoint definitions to the state file. Throws if the write fails. */
  private persist(): void {
    if (this.closing) return;
    const records: StoredEndpoint[] = [...this.endpoints.values()].map((endpoint) => {
      const record: StoredEndpoint = {
        name: endpoint.name,
        id: endpoint.id,
        creator: CREATOR,
        creation_timestamp: endpoint.creationTimestamp,
        last_updated_timestamp: endpoint.lastUpdatedTimestamp,
        tags: endpoint.tags,
        config: this.toStoredConfig(endpoint.config),
      };
      if (endpoint.pending) {
        record.pending_config = { ...this.toStoredConfig(endpoint.pending), start_time: endpoint.pending.startTime };
      }
      if (endpoint.aiGateway) record.ai_gateway = cloneAiGateway(endpoint.aiGateway);
      return record;
    });
    writeEndpointFile(this.options.stateFile, records);
  }

  /** Persists after a background state change. A failure is only logged, because no request can receive it. */
  private persistInBackground(): void {
    try {
      this.persist();
    } catch (error) {
      this.logger.error({ file: this.options.stateFile, error: errorMessage(error) }, 'failed to write endpoint definitions');
    }
  }

  private toStoredConfig(config: ConfigRuntime): StoredConfig {
    return {
      served_entities: config.entities.map(({ spec }) => ({ ...spec })),
      traffic_config: { routes: config.routes.map((route) => ({ ...route })) },
      config_version: config.version,
    };
  }

  private toConfigOutput(config: ConfigRuntime): EndpointConfigOutput {
    return {
      served_entities: config.entities.map((entity) => ({
        ...entity.spec,
        state: { deployment: entity.deployment, deployment_state_message: this.deploymentMessage(entity) },
      })),
      traffic_config: { routes: config.routes.map((route) => ({ ...route })) },
      config_version: config.version,
    };
  }

  /** Returns the deployment_state_message of an entity, which scale to zero changes for a ready entity. */
  private deploymentMessage(entity: EntityRuntime): string {
    if (entity.deployment !== 'DEPLOYMENT_READY' || !entity.slot) return entity.message;
    return this.scaleToZero.describe(entity.slot, entity.spec) ?? entity.message;
  }

  private toHeader(endpoint: EndpointRuntime): EndpointHeader {
    return {
      name: endpoint.name,
      id: endpoint.id,
      creator: CREATOR,
      creation_timestamp: endpoint.creationTimestamp,
      last_updated_timestamp: endpoint.lastUpdatedTimestamp,
      state: { ready: this.readyState(endpoint), config_update: endpoint.configUpdate },
    };
  }

  private toDetailed(endpoint: EndpointRuntime): ServingEndpointDetailed {
    const detailed: ServingEndpointDetailed = {
      ...this.toHeader(endpoint),
      config: this.toConfigOutput(endpoint.config),
      tags: endpoint.tags.map((tag) => ({ ...tag })),
      endpoint_url: `${this.options.baseUrl()}/serving-endpoints/${endpoint.name}/invocations`,
    };
    if (endpoint.stateMessage) detailed.state_message = endpoint.stateMessage;
    if (endpoint.aiGateway) detailed.ai_gateway = cloneAiGateway(endpoint.aiGateway);
    if (endpoint.pending) {
      detailed.pending_config = { ...this.toConfigOutput(endpoint.pending), start_time: endpoint.pending.startTime };
    }
    return detailed;
  }
}
