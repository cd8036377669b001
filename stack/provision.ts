import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ML_DIR, PYTHON_BIN, TOOLS_DIR } from '../common/paths';
import { elapsed, progress } from './progress';

/** The Temporal CLI release the dev server is built from. */
export const TEMPORAL_CLI_MODULE = 'github.com/temporalio/cli/cmd/temporal@v1.5.1';
const UV_VERSION = '0.13.8';

const TEMPORAL_BIN = path.join(TOOLS_DIR, 'bin', 'temporal');
const UV_BIN = path.join(TOOLS_DIR, 'uv', 'bin', 'uv');
const LOCK_STAMP = path.join(ML_DIR, '.venv', '.uv-lock-sha256');

/** Runs a command, streaming its output to stderr with a prefix; rejects on a non-zero exit. */
export function runCommand(
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; quiet?: boolean } = {},
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const relay = (chunk: Buffer): void => {
      output += chunk.toString();
      if (options.quiet) return;
      for (const line of chunk.toString().split('\n')) if (line.trim()) process.stderr.write(`    ${line}\n`);
    };
    child.stdout.on('data', relay);
    child.stderr.on('data', relay);
    child.once('error', (error) => reject(new Error(`Cannot run ${command}: ${error.message}`)));
    child.once('close', (code) =>
      code === 0
        ? resolve()
        : reject(new Error(`${command} ${args.join(' ')} exited with code ${code}: ${output.trim().slice(-500)}`)),
    );
  });
}

/**
 * Returns the path of the `temporal` CLI: TEMPORAL_CLI_PATH if set, else the project-local build, which
 * is made with `go install` on first use (several minutes on 2 cores).
 */
export async function ensureTemporalCli(): Promise<string> {
  const fromEnv = process.env.TEMPORAL_CLI_PATH;
  if (fromEnv) {
    if (!fs.existsSync(fromEnv)) {
      throw new Error(`TEMPORAL_CLI_PATH=${fromEnv} does not exist. Point it at a temporal binary or unset it.`);
    }
    return fromEnv;
  }
  if (fs.existsSync(TEMPORAL_BIN)) return TEMPORAL_BIN;
  const started = Date.now();
  progress(`installing the Temporal CLI: go install ${TEMPORAL_CLI_MODULE} (first run only, takes minutes)`);
  await runCommand('go', ['install', TEMPORAL_CLI_MODULE], {
    env: { ...process.env, GOBIN: path.dirname(TEMPORAL_BIN), CGO_ENABLED: '0' },
  });
  progress(`Temporal CLI installed in ${elapsed(started)}: ${TEMPORAL_BIN}`);
  return TEMPORAL_BIN;
}

/** Returns the uv binary: UV_BIN if set, else a project-local copy installed with pip. */
export async function ensureUv(): Promise<string> {
  if (process.env.UV_BIN) return process.env.UV_BIN;
  if (fs.existsSync(UV_BIN)) return UV_BIN;
  progress(`installing uv ${UV_VERSION} into ${path.dirname(path.dirname(UV_BIN))}`);
  await runCommand('python3', ['-m', 'venv', path.dirname(path.dirname(UV_BIN))]);
  await runCommand(path.join(path.dirname(UV_BIN), 'pip'), ['install', '--quiet', `uv==${UV_VERSION}`]);
  return UV_BIN;
}

/** Creates or updates `ml/.venv` from `ml/uv.lock`; skipped when the lock file has not changed. */
export async function ensurePythonEnv(): Promise<void> {
  const lockHash = crypto.createHash('sha256').update(fs.readFileSync(path.join(ML_DIR, 'uv.lock'))).digest('hex');
  if (fs.existsSync(PYTHON_BIN) && fs.existsSync(LOCK_STAMP) && fs.readFileSync(LOCK_STAMP, 'utf8') === lockHash) return;
  const uv = await ensureUv();
  const started = Date.now();
  progress('installing the Python environment (MLflow, LightGBM) with uv sync --frozen');
  await runCommand(uv, ['sync', '--frozen', '--python', 'python3.11'], {
    cwd: ML_DIR,
    env: { ...process.env, UV_PYTHON_DOWNLOADS: 'never' },
  });
  fs.writeFileSync(LOCK_STAMP, lockHash);
  progress(`Python environment ready in ${elapsed(started)}`);
}

/** Installs everything the local stack needs and returns the Temporal CLI path. */
export async function provision(): Promise<{ temporalCli: string }> {
  const temporalCli = await ensureTemporalCli();
  await ensurePythonEnv();
  return { temporalCli };
}
