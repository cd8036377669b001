import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { StackSettings } from '../config/stack';
import { temporalAddress } from '../config/stack';
import { elapsed, progress } from './progress';
import { provision, runCommand } from './provision';
import { modelServerPidDir, reapModelServers } from '../serving/orphans';
import { SEARCH_ATTRIBUTES } from '../workflows/search-attributes';
import { mlflowService, servingService, temporalService, type ServiceDefinition } from './services';

/** Namespace retention: finished runs stay visible in the Web UI this long (the dev server default is 24 h). */
const RETENTION = '168h';

export interface StackHandle {
  settings: StackSettings;
  /** Services this call started; the others were already running and are left alone by `stop`. */
  started: string[];
  stop(): Promise<void>;
}

const pidFile = (settings: StackSettings, name: string): string => path.join(settings.stateDir, 'run', `${name}.pid`);

/** Services this process has started and not stopped yet, so Ctrl-C during startup can stop them too. */
const startedHere = new Set<string>();

/** Returns true when something accepts TCP connections on the port. */
export function portInUse(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Returns true when a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function startService(settings: StackSettings, service: ServiceDefinition, exclusive = false): Promise<boolean> {
  if (await service.healthy()) {
    if (exclusive) {
      throw new Error(
        `A healthy ${service.name} already responds on port ${service.port}, maybe another checkout's stack. ` +
          'Stop it, or shift every port with MLOPS_TEST_PORT_OFFSET (tests) or the MLOPS_*_PORT variables.',
      );
    }
    progress(`${service.name}: already running (${service.describe()})`);
    return false;
  }
  if (await portInUse(settings.host, service.port)) {
    throw new Error(
      `Port ${service.port} on ${settings.host} is taken by a program that is not a healthy ${service.name}. ` +
        'Stop that program or choose other ports with the MLOPS_*_PORT environment variables.',
    );
  }
  fs.mkdirSync(path.dirname(service.logFile), { recursive: true });
  fs.mkdirSync(path.dirname(pidFile(settings, service.name)), { recursive: true });
  const log = fs.openSync(service.logFile, 'a');
  const started = Date.now();
  const child = spawn(service.command, service.args, {
    detached: true,
    stdio: ['ignore', log, log],
    env: { ...process.env, ...service.env },
  });
  fs.closeSync(log);
  child.unref();
  if (child.pid === undefined) throw new Error(`Could not start ${service.name} (${service.command}).`);
  fs.writeFileSync(pidFile(settings, service.name), String(child.pid));
  startedHere.add(service.name);
  progress(`${service.name}: starting, pid ${child.pid}, log ${service.logFile}`);

  let lastReport = Date.now();
  while (!(await service.healthy())) {
    if (!alive(child.pid)) {
      const tail = fs.readFileSync(service.logFile, 'utf8').split('\n').slice(-15).join('\n');
      throw new Error(`${service.name} exited during startup. Last lines of ${service.logFile}:\n${tail}`);
    }
    if (Date.now() - started > service.startTimeoutMs) {
      killGroup(child.pid, 'SIGKILL');
      throw new Error(
        `${service.name} did not become healthy within ${service.startTimeoutMs / 1000} s; see ${service.logFile}.`,
      );
    }
    if (Date.now() - lastReport > 10_000) {
      progress(`${service.name}: still starting (${elapsed(started)})`);
      lastReport = Date.now();
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  // A health check that passed while this process exited reached another program on the same port.
  await new Promise((resolve) => setTimeout(resolve, 200));
  if (!alive(child.pid)) {
    const tail = fs.readFileSync(service.logFile, 'utf8').split('\n').slice(-15).join('\n');
    throw new Error(
      `${service.name} exited during startup while another program responded on port ${service.port}. ` +
        `Last lines of ${service.logFile}:\n${tail}`,
    );
  }
  progress(`${service.name}: ready in ${elapsed(started)} (${service.describe()})`);
  return true;
}

/** Registers the search attributes and raises retention; both are idempotent. */
async function configureTemporal(settings: StackSettings, temporalCli: string): Promise<void> {
  const target = ['--address', temporalAddress(settings), '--namespace', settings.temporalNamespace];
  const names = SEARCH_ATTRIBUTES.flatMap((key) => ['--name', key.name]);
  // A reused database keeps the attributes of its first start, so register them again. The command
  // fails when they already exist, which is the expected case.
  await runCommand(temporalCli, ['operator', 'search-attribute', 'create', ...target, ...names, '--type', 'Keyword'], {
    quiet: true,
  }).catch(() => undefined);
  await runCommand(temporalCli, ['operator', 'namespace', 'update', ...target, '--retention', RETENTION], { quiet: true });
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

/** Stops a service started by a launcher: SIGTERM to its process group, SIGKILL after 15 s. */
export async function stopService(settings: StackSettings, name: string): Promise<void> {
  const file = pidFile(settings, name);
  const pid = fs.existsSync(file) ? Number(fs.readFileSync(file, 'utf8')) : NaN;
  if (Number.isInteger(pid) && pid > 0 && alive(pid)) {
    progress(`${name}: stopping pid ${pid}`);
    killGroup(pid, 'SIGTERM');
    const deadline = Date.now() + 15_000;
    while (alive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
    if (alive(pid)) killGroup(pid, 'SIGKILL');
    progress(`${name}: stopped`);
  }
  fs.rmSync(file, { force: true });
  startedHere.delete(name);
  if (name === 'serving') {
    const reaped = reapModelServers(modelServerPidDir(settings.stateDir));
    if (reaped.length > 0) progress(`serving: stopped ${reaped.length} leftover model servers (${reaped.join(', ')})`);
  }
}

/** Stops every service that this process started, including ones still starting up. */
export async function stopServicesStartedHere(settings: StackSettings): Promise<void> {
  await stopStack(settings, [...startedHere]);
}

/** Stops the whole stack in reverse start order. */
export async function stopStack(settings: StackSettings, names: string[] = ['temporal', 'mlflow', 'serving']): Promise<void> {
  for (const name of ['serving', 'mlflow', 'temporal'].filter((n) => names.includes(n))) {
    await stopService(settings, name);
  }
}

/**
 * Provisions missing tools, then starts Temporal, MLflow and the serving plane unless each is already
 * healthy on its port, and waits for their health checks. With `exclusive`, a service that already
 * responds is an error instead of being reused, so tests never run against another checkout's stack.
 */
export async function startStack(settings: StackSettings, options: { exclusive?: boolean } = {}): Promise<StackHandle> {
  const { temporalCli } = await provision();
  fs.mkdirSync(path.join(settings.stateDir, 'temporal'), { recursive: true });
  const started: string[] = [];
  const handle: StackHandle = { settings, started, stop: () => stopStack(settings, started) };
  try {
    const temporal = temporalService(settings, temporalCli);
    const exclusive = options.exclusive ?? false;
    if (await startService(settings, temporal, exclusive)) started.push('temporal');
    await configureTemporal(settings, temporalCli);
    if (await startService(settings, mlflowService(settings), exclusive)) started.push('mlflow');
    if (await startService(settings, servingService(settings), exclusive)) started.push('serving');
  } catch (error) {
    await handle.stop();
    throw error;
  }
  return handle;
}
