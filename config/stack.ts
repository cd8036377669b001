import path from 'node:path';
import { stateDir } from '../common/paths';
import { DEFAULT_MAX_MODEL_SERVERS } from '../serving/limits';

/** Addresses and folders of the embedded local stack, each overridable by an environment variable. */
export interface StackSettings {
  stateDir: string;
  /** Address the local services bind to. */
  host: string;
  /** Host names clients use; they differ from `host` only when services run elsewhere (docker-compose). */
  temporalHost: string;
  mlflowHost: string;
  servingHost: string;
  temporalPort: number;
  temporalUiPort: number;
  temporalNamespace: string;
  taskQueue: string;
  mlflowPort: number;
  servingPort: number;
  /** Idle time in seconds after which the serving plane scales a served entity with scale_to_zero_enabled to zero. */
  servingScaleToZeroIdleSeconds: number;
  /** Time in seconds between two writes of buffered inference table rows by the serving plane. */
  servingPayloadFlushSeconds: number;
  /** Maximum number of model servers that the serving plane's endpoints may need at once. */
  servingMaxModelServers: number;
}

function port(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    throw new Error(`Invalid ${name}=${JSON.stringify(raw)}: expected a TCP port number between 1 and 65535.`);
  }
  return value;
}

/** Reads a duration in seconds from `name`. `max` keeps it within what a Node timer can wait. */
function positiveSeconds(env: NodeJS.ProcessEnv, name: string, fallback: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || value > max) {
    throw new Error(
      `Invalid ${name}=${JSON.stringify(raw)}: expected a number of seconds greater than 0 and at most ${max}, such as ${fallback}.`,
    );
  }
  return value;
}

/** Reads a whole number from 1 to `max` from `name`. */
function count(env: NodeJS.ProcessEnv, name: string, fallback: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new Error(`Invalid ${name}=${JSON.stringify(raw)}: expected a whole number from 1 to ${max}, such as ${fallback}.`);
  }
  return value;
}

/** One day in seconds, a limit well below the 24.8 days that a Node timer can wait. */
const ONE_DAY_SECONDS = 86_400;

export function stackSettings(env: NodeJS.ProcessEnv = process.env): StackSettings {
  return {
    stateDir: stateDir(env),
    host: env.MLOPS_BIND_HOST ?? '127.0.0.1',
    temporalHost: env.MLOPS_TEMPORAL_HOST ?? '127.0.0.1',
    mlflowHost: env.MLOPS_MLFLOW_HOST ?? '127.0.0.1',
    servingHost: env.MLOPS_SERVING_HOST ?? '127.0.0.1',
    temporalPort: port(env, 'MLOPS_TEMPORAL_PORT', 7233),
    temporalUiPort: port(env, 'MLOPS_TEMPORAL_UI_PORT', 8233),
    temporalNamespace: env.MLOPS_TEMPORAL_NAMESPACE ?? 'default',
    taskQueue: env.MLOPS_TASK_QUEUE ?? 'mlops-pipeline',
    mlflowPort: port(env, 'MLOPS_MLFLOW_PORT', 5000),
    servingPort: port(env, 'MLOPS_SERVING_PORT', 8080),
    // Databricks scales an idle served entity to zero after 30 minutes.
    servingScaleToZeroIdleSeconds: positiveSeconds(env, 'MLOPS_SERVING_SCALE_TO_ZERO_IDLE_SECONDS', 1800, ONE_DAY_SECONDS),
    servingPayloadFlushSeconds: positiveSeconds(env, 'MLOPS_SERVING_PAYLOAD_FLUSH_SECONDS', 10, ONE_DAY_SECONDS),
    servingMaxModelServers: count(env, 'MLOPS_SERVING_MAX_MODEL_SERVERS', DEFAULT_MAX_MODEL_SERVERS, 1000),
  };
}

export const temporalAddress = (s: StackSettings): string => `${s.temporalHost}:${s.temporalPort}`;
export const temporalUiUrl = (s: StackSettings): string => `http://${s.temporalHost}:${s.temporalUiPort}`;
export const mlflowUrl = (s: StackSettings): string => `http://${s.mlflowHost}:${s.mlflowPort}`;
export const servingUrl = (s: StackSettings): string => `http://${s.servingHost}:${s.servingPort}`;
export const logsDir = (s: StackSettings): string => path.join(s.stateDir, 'logs');
export const catalogDir = (s: StackSettings): string => path.join(s.stateDir, 'catalog');
export const jobsDir = (s: StackSettings): string => path.join(s.stateDir, 'jobs');
