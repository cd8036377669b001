import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { Context } from '@temporalio/activity';
import { invalidInput, jobFailed } from '../common/errors';
import { ML_DIR, PYTHON_BIN } from '../common/paths';
import { writeFileAtomic } from '../platform/catalog/local';

/** Exit code the jobs use for invalid input; anything else non-zero is a job failure. */
const EXIT_INVALID_INPUT = 2;
const HEARTBEAT_MS = 5_000;
const KILL_GRACE_MS = 10_000;

interface JobLogLine {
  level?: string;
  msg?: string;
  [key: string]: unknown;
}

/**
 * Runs one command of the `hotel_mlops.jobs` Python module in a child process and returns its result
 * file. The job's JSON log lines are forwarded to the activity log, the activity heartbeats while the job
 * runs, and cancelling the activity kills the job's process group.
 */
export async function runPythonJob<T>(command: 'train' | 'log' | 'score', spec: object, workDir: string): Promise<T> {
  const context = Context.current();
  fs.mkdirSync(workDir, { recursive: true });
  const specFile = path.join(workDir, `${command}-spec.json`);
  const resultFile = path.join(workDir, `${command}-result.json`);
  writeFileAtomic(specFile, JSON.stringify(spec, null, 2));
  fs.rmSync(resultFile, { force: true });

  const child = spawn(PYTHON_BIN, ['-m', 'hotel_mlops.jobs', command, '--spec', specFile, '--result', resultFile], {
    cwd: ML_DIR,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PYTHONUNBUFFERED: '1' },
  });
  context.log.info('Python job started', { command, pid: child.pid, specFile });

  let lastError: string | undefined;
  const forward = (line: string): void => {
    let entry: JobLogLine;
    try {
      entry = JSON.parse(line) as JobLogLine;
    } catch {
      entry = { level: 'info', msg: line };
    }
    const { level = 'info', msg = '', ...fields } = entry;
    if (level === 'error') lastError = msg;
    let method: 'error' | 'warn' | 'info' = 'info';
    if (level === 'error') method = 'error';
    else if (level === 'warning' || level === 'warn') method = 'warn';
    context.log[method](`[${command} job] ${msg}`, { pid: child.pid, ...fields });
  };
  readline.createInterface({ input: child.stderr }).on('line', forward);
  readline.createInterface({ input: child.stdout }).on('line', forward);

  const heartbeat = setInterval(() => context.heartbeat({ command, pid: child.pid }), HEARTBEAT_MS);
  context.heartbeat({ command, pid: child.pid });
  const kill = (): void => {
    if (child.exitCode !== null || child.pid === undefined) return;
    context.log.warn('Activity cancelled; stopping Python job', { command, pid: child.pid });
    killGroup(child.pid, 'SIGTERM');
    setTimeout(() => killGroup(child.pid!, 'SIGKILL'), KILL_GRACE_MS).unref();
  };
  context.cancellationSignal.addEventListener('abort', kill);

  try {
    const code = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (exitCode, signal) => resolve(exitCode ?? (signal ? 128 : 1)));
    });
    if (context.cancellationSignal.aborted) throw context.cancellationSignal.reason;
    if (code === EXIT_INVALID_INPUT) {
      throw invalidInput(`The ${command} job rejected its input: ${lastError ?? 'no message'}`);
    }
    if (code !== 0) {
      throw jobFailed(`The ${command} job exited with code ${code}: ${lastError ?? 'see the worker log'}`);
    }
    context.log.info('Python job finished', { command, pid: child.pid });
    return JSON.parse(fs.readFileSync(resultFile, 'utf8')) as T;
  } finally {
    clearInterval(heartbeat);
    context.cancellationSignal.removeEventListener('abort', kill);
  }
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // The group has already exited.
  }
}
