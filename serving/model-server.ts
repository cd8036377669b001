import { spawn, type ChildProcess } from 'node:child_process';
import { forgetModelServer, recordModelServer } from './orphans';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from '../common/logger';
import { MLFLOW_BIN } from '../common/paths';

/** Launch request for the model server of one served entity of one endpoint. */
export interface ModelServerSpec {
  endpoint: string;
  servedEntityName: string;
  /** Registered model name. Names with dots (Unity Catalog style) are passed through unchanged. */
  entityName: string;
  entityVersion: string;
  /** Number of uvicorn worker processes. */
  workers: number;
  /** Aborting this signal stops a server that is still starting, and start() then rejects. */
  signal?: AbortSignal;
}

/** A model server process whose `GET /ping` returned 200. */
export interface ModelServerHandle {
  /** Base URL without a trailing slash, such as `http://127.0.0.1:41234`. */
  readonly url: string;
  readonly pid: number;
  /** Stops the server and waits until it has exited. Safe to call more than once. */
  stop(): Promise<void>;
  /** Registers a callback for the exit of the process, whether stop() caused it or not. */
  onExit(callback: (code: number | null, signal: NodeJS.Signals | null) => void): void;
}

export interface ModelServerLauncher {
  /** Starts a model server and resolves once it is ready to serve invocations. */
  start(spec: ModelServerSpec): Promise<ModelServerHandle>;
}

export interface MlflowModelServerLauncherOptions {
  /** MLflow tracking server that resolves `models:/` URIs, passed as MLFLOW_TRACKING_URI. */
  trackingUri: string;
  /** Folder for the per-server log files. */
  logsDir: string;
  /** Folder for one pid file per running model server, so a later plane can stop orphans. */
  pidDir?: string;
  logger: Logger;
  mlflowBin?: string;
  /** Interface that model servers bind to. */
  host?: string;
  /** Maximum time in ms from spawn until `GET /ping` returns 200 (default 300 000). */
  readyTimeoutMs?: number;
  /** Delay in ms between two readiness probes (default 500). */
  pollIntervalMs?: number;
  /** Time in ms between SIGTERM and SIGKILL when stopping (default 10 000). */
  stopGraceMs?: number;
}

export const DEFAULT_READY_TIMEOUT_MS = 300_000;
const DEFAULT_POLL_INTERVAL_MS = 500;
const DEFAULT_STOP_GRACE_MS = 10_000;
/** Maximum time in ms for one readiness probe. */
const PING_TIMEOUT_MS = 2_000;
/** Number of last log lines quoted in start failure messages. */
const LOG_TAIL_LINES = 20;
/** Maximum number of earlier error lines quoted in addition to the tail. */
const MAX_EARLIER_ERROR_LINES = 5;
/** Log lines that usually name the cause of a failed start, even when a long traceback follows them. */
const ERROR_LINE_PATTERN = /error|exception|not found|denied|refused|no such/i;

export function modelUri(entityName: string, entityVersion: string): string {
  return `models:/${entityName}/${entityVersion}`;
}

/** Returns the log file of one served entity: `<logsDir>/model-server-<endpoint>-<served entity>.log`. */
export function modelServerLogFile(logsDir: string, endpoint: string, servedEntityName: string): string {
  // Request validation already restricts both names to [A-Za-z0-9_-]. The replacement protects
  // callers that use a launcher directly.
  const safe = (name: string): string => name.replace(/[^A-Za-z0-9_.-]/g, '_');
  return path.join(logsDir, `model-server-${safe(endpoint)}-${safe(servedEntityName)}.log`);
}

/**
 * Returns a TCP port that was free on `host` a moment ago, by binding port 0 and closing the socket.
 * NOTE: another process can take the port before the model server binds it. The model server then
 * exits with "address already in use", and start() reports that with the log tail.
 */
export function findFreePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host, port: 0 }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error(`Could not read the port bound on ${host}.`))));
    });
  });
}

/** Process groups of model servers that are still running, killed if this Node process exits. */
const liveProcessGroups = new Set<number>();
let exitHookInstalled = false;

function trackProcessGroup(pid: number): void {
  liveProcessGroups.add(pid);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers must be synchronous, so this can only send SIGKILL and not wait.
  process.on('exit', () => {
    for (const group of liveProcessGroups) signalProcessGroup(group, 'SIGKILL');
  });
}

/** Sends a signal to a whole process group. Returns false if the group no longer exists. */
function signalProcessGroup(pid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves when `promise` settles or after `ms`, whichever comes first, and clears its timer. */
async function waitAtMost(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves when `signal` aborts. Without a signal, the promise never resolves. */
function abortPromise(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => signal?.addEventListener('abort', () => resolve(), { once: true }));
}

/** Returns true if `GET <url>/ping` returns 200 within PING_TIMEOUT_MS. */
async function ping(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(PING_TIMEOUT_MS) });
    await response.arrayBuffer();
    return response.status === 200;
  } catch {
    return false;
  }
}

/**
 * Returns the last LOG_TAIL_LINES lines that were appended to `file` after byte offset `from`. Error
 * lines before the tail are quoted first, because a Python traceback can push the cause out of it.
 */
function readLogExcerpt(file: string, from: number): string {
  let lines: string[];
  try {
    lines = fs.readFileSync(file).subarray(from).toString('utf8').trimEnd().split('\n');
  } catch (error) {
    return `(could not read ${file}: ${(error as Error).message})`;
  }

  const tail = lines.slice(-LOG_TAIL_LINES);
  const earlierErrors = lines
    .slice(0, -LOG_TAIL_LINES)
    .filter((line) => ERROR_LINE_PATTERN.test(line))
    .slice(-MAX_EARLIER_ERROR_LINES);
  const header = `Last ${tail.length} lines of ${file}:`;
  if (earlierErrors.length === 0) return `${header}\n${tail.join('\n')}`;
  return `Earlier error lines of ${file}:\n${earlierErrors.join('\n')}\n${header}\n${tail.join('\n')}`;
}

/**
 * Starts `mlflow models serve --env-manager local` processes, one per served entity. Each process
 * gets its own process group, so that stop() also ends the uvicorn workers that it forks.
 */
export class MlflowModelServerLauncher implements ModelServerLauncher {
  private readonly host: string;
  private readonly mlflowBin: string;
  private readonly readyTimeoutMs: number;
  private readonly pollIntervalMs: number;
  private readonly stopGraceMs: number;

  constructor(private readonly options: MlflowModelServerLauncherOptions) {
    this.host = options.host ?? '127.0.0.1';
    this.mlflowBin = options.mlflowBin ?? MLFLOW_BIN;
    this.readyTimeoutMs = options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
    this.pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
    this.stopGraceMs = options.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
  }

  async start(spec: ModelServerSpec): Promise<ModelServerHandle> {
    spec.signal?.throwIfAborted();
    const port = await findFreePort(this.host);
    const uri = modelUri(spec.entityName, spec.entityVersion);
    const args = ['models', 'serve', '-m', uri, '--env-manager', 'local'];
    args.push('-h', this.host, '-p', String(port), '-w', String(spec.workers));

    const logFile = modelServerLogFile(this.options.logsDir, spec.endpoint, spec.servedEntityName);
    fs.mkdirSync(this.options.logsDir, { recursive: true });
    const logOffset = fs.existsSync(logFile) ? fs.statSync(logFile).size : 0;
    fs.appendFileSync(logFile, `\n--- ${new Date().toISOString()} serving plane runs: ${this.mlflowBin} ${args.join(' ')}\n`);

    const child = await this.spawnServer(args, logFile);
    const pid = child.pid as number;
    trackProcessGroup(pid);
    if (this.options.pidDir) recordModelServer(this.options.pidDir, pid);
    const server = new MlflowModelServer(child, `http://${this.host}:${port}`, this.stopGraceMs);
    const context = { endpoint: spec.endpoint, servedEntity: spec.servedEntityName, modelUri: uri, pid, port };
    this.options.logger.info({ ...context, workers: spec.workers, logFile }, 'model server started');

    server.onExit((code, signal) => {
      liveProcessGroups.delete(pid);
      if (this.options.pidDir) forgetModelServer(this.options.pidDir, pid);
      this.options.logger.info({ ...context, exitCode: code, signal }, 'model server exited');
    });

    const startedAt = Date.now();
    const aborted = abortPromise(spec.signal);
    const describe = `Model server for ${uri} (endpoint ${spec.endpoint}, served entity ${spec.servedEntityName}, pid ${pid}, port ${port})`;
    const failWithTail = (reason: string): Error =>
      new Error(`${describe} ${reason}.\n${readLogExcerpt(logFile, logOffset)}`);

    for (;;) {
      if (server.exited) {
        throw failWithTail(`exited with code ${server.exitCode} (signal ${server.exitSignal ?? 'none'}) before it became ready`);
      }
      if (spec.signal?.aborted) {
        await server.stop();
        throw new Error(`${describe} was stopped before it became ready, because its start was canceled.`);
      }
      if (await ping(server.url)) {
        this.options.logger.info({ ...context, startupMs: Date.now() - startedAt }, 'model server ready');
        return server;
      }
      if (Date.now() - startedAt > this.readyTimeoutMs) {
        await server.stop();
        throw failWithTail(
          `timed out: GET /ping did not return 200 within ${this.readyTimeoutMs} ms, so the server was stopped. Raise readyTimeoutMs if the model needs longer to load`,
        );
      }
      await waitAtMost(Promise.race([server.exitPromise, aborted]), this.pollIntervalMs);
    }
  }

  /** Spawns mlflow with stdout and stderr appended to the log file. Rejects if the spawn fails. */
  private spawnServer(args: string[], logFile: string): Promise<ChildProcess> {
    const logFd = fs.openSync(logFile, 'a');
    try {
      const child = spawn(this.mlflowBin, args, {
        detached: true,
        stdio: ['ignore', logFd, logFd],
        env: {
          ...process.env,
          // mlflow 3.17 starts the scoring server with `bash -c "exec uvicorn ..."`, so uvicorn must be
          // on PATH. Putting the folder of the mlflow binary first selects the venv's uvicorn.
          PATH: [path.dirname(this.mlflowBin), process.env.PATH].filter(Boolean).join(path.delimiter),
          MLFLOW_TRACKING_URI: this.options.trackingUri,
          PYTHONUNBUFFERED: '1',
        },
      });
      return new Promise((resolve, reject) => {
        child.once('spawn', () => resolve(child));
        // 'on' rather than 'once', because an 'error' event without a listener would crash the process.
        child.on('error', (error) => reject(new Error(`Failed to run ${this.mlflowBin}: ${error.message}. Install the ML environment under ml/.venv.`)));
      });
    } finally {
      // The child has its own copy of the descriptor.
      fs.closeSync(logFd);
    }
  }
}

class MlflowModelServer implements ModelServerHandle {
  readonly pid: number;
  exited = false;
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  readonly exitPromise: Promise<void>;
  private stopPromise?: Promise<void>;

  constructor(
    child: ChildProcess,
    readonly url: string,
    private readonly stopGraceMs: number,
  ) {
    this.pid = child.pid as number;
    this.exitPromise = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exited = true;
        this.exitCode = code;
        this.exitSignal = signal;
        resolve();
      });
    });
  }

  onExit(callback: (code: number | null, signal: NodeJS.Signals | null) => void): void {
    void this.exitPromise.then(() => callback(this.exitCode, this.exitSignal));
  }

  stop(): Promise<void> {
    this.stopPromise ??= this.terminate();
    return this.stopPromise;
  }

  /** SIGTERM to the process group, SIGKILL to what is left after the grace period. */
  private async terminate(): Promise<void> {
    const deadline = Date.now() + this.stopGraceMs;
    signalProcessGroup(this.pid, 'SIGTERM');
    await waitAtMost(this.exitPromise, this.stopGraceMs);

    // uvicorn workers can outlive the mlflow process for a moment, so wait for the whole group.
    while (signalProcessGroup(this.pid, 0) && Date.now() < deadline) await sleep(100);
    if (signalProcessGroup(this.pid, 'SIGKILL') || !this.exited) {
      await waitAtMost(this.exitPromise, 5_000);
    }
    liveProcessGroups.delete(this.pid);
  }
}
