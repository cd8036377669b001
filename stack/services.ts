import path from 'node:path';
import { Connection } from '@temporalio/client';
import axios from 'axios';
import { MLFLOW_BIN, REPO_ROOT } from '../common/paths';
import { logsDir, mlflowUrl, servingUrl, temporalAddress, temporalUiUrl, type StackSettings } from '../config/stack';
import { SEARCH_ATTRIBUTES } from '../workflows/search-attributes';

/** One process of the local stack. */
export interface ServiceDefinition {
  name: 'temporal' | 'mlflow' | 'serving';
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  port: number;
  logFile: string;
  /** Maximum time from spawn to healthy, in milliseconds. */
  startTimeoutMs: number;
  healthy(): Promise<boolean>;
  describe(): string;
}

async function httpOk(url: string): Promise<boolean> {
  try {
    const response = await axios.get(url, { timeout: 2000, validateStatus: () => true });
    return response.status === 200;
  } catch {
    return false;
  }
}

export async function temporalHealthy(settings: StackSettings): Promise<boolean> {
  let connection: Connection | undefined;
  try {
    connection = await Connection.connect({ address: temporalAddress(settings), connectTimeout: 2000 });
    await connection.workflowService.getSystemInfo({});
    return true;
  } catch {
    return false;
  } finally {
    await connection?.close().catch(() => undefined);
  }
}

export function temporalService(settings: StackSettings, temporalCli: string): ServiceDefinition {
  const dbFile = path.join(settings.stateDir, 'temporal', 'temporal.db');
  const attributes = SEARCH_ATTRIBUTES.flatMap((key) => ['--search-attribute', `${key.name}=Keyword`]);
  return {
    name: 'temporal',
    command: temporalCli,
    args: [
      'server', 'start-dev',
      '--db-filename', dbFile,
      '--ip', settings.host,
      '--port', String(settings.temporalPort),
      '--ui-port', String(settings.temporalUiPort),
      '--namespace', settings.temporalNamespace,
      '--log-format', 'json',
      '--log-level', 'warn',
      ...attributes,
      // The TypeScript SDK sends worker heartbeats; without these flags the server logs a warning.
      '--dynamic-config-value', 'frontend.WorkerHeartbeatsEnabled=true',
      '--dynamic-config-value', 'frontend.ListWorkersEnabled=true',
    ],
    port: settings.temporalPort,
    logFile: path.join(logsDir(settings), 'temporal.log'),
    startTimeoutMs: 120_000,
    healthy: () => temporalHealthy(settings),
    describe: () => `gRPC ${temporalAddress(settings)}, Web UI ${temporalUiUrl(settings)}`,
  };
}

export function mlflowService(settings: StackSettings): ServiceDefinition {
  const root = path.join(settings.stateDir, 'mlflow');
  return {
    name: 'mlflow',
    command: MLFLOW_BIN,
    args: [
      'server',
      '--backend-store-uri', `sqlite:///${path.join(root, 'mlflow.db')}`,
      '--artifacts-destination', path.join(root, 'artifacts'),
      '--serve-artifacts',
      '--host', settings.host,
      '--port', String(settings.mlflowPort),
      '--workers', '2',
    ],
    // MLflow 3 sends usage telemetry to an external host unless this is set.
    env: { MLFLOW_DISABLE_TELEMETRY: 'true' },
    port: settings.mlflowPort,
    logFile: path.join(logsDir(settings), 'mlflow.log'),
    startTimeoutMs: 180_000,
    healthy: () => httpOk(`${mlflowUrl(settings)}/health`),
    describe: () => `tracking server and UI ${mlflowUrl(settings)}`,
  };
}

export function servingService(settings: StackSettings): ServiceDefinition {
  return {
    name: 'serving',
    command: process.execPath,
    args: ['--import', 'tsx', path.join(REPO_ROOT, 'serving', 'main.ts')],
    env: {
      MLOPS_STATE_DIR: settings.stateDir,
      MLOPS_SERVING_PORT: String(settings.servingPort),
      MLOPS_MLFLOW_PORT: String(settings.mlflowPort),
      MLOPS_SERVING_SCALE_TO_ZERO_IDLE_SECONDS: String(settings.servingScaleToZeroIdleSeconds),
      MLOPS_SERVING_PAYLOAD_FLUSH_SECONDS: String(settings.servingPayloadFlushSeconds),
      MLOPS_SERVING_MAX_MODEL_SERVERS: String(settings.servingMaxModelServers),
      MLFLOW_DISABLE_TELEMETRY: 'true',
    },
    port: settings.servingPort,
    logFile: path.join(logsDir(settings), 'serving.log'),
    startTimeoutMs: 60_000,
    healthy: () => httpOk(`${servingUrl(settings)}/health`),
    describe: () => `Databricks serving REST API ${servingUrl(settings)}`,
  };
}
