import { execFile, type ExecFileException } from 'node:child_process';
import path from 'node:path';
import { PYTHON_BIN, REPO_ROOT } from '../../common/paths';

/** Model versions that fixture_models.py can register. Its module docstring describes each one. */
export const FIXTURE_KINDS = ['good', 'good_alt', 'bad_output', 'broken_start', 'slow', 'flaky'] as const;
export type FixtureKind = (typeof FIXTURE_KINDS)[number];

/** A registered model version, as `models:/<name>/<version>` names it. */
export interface FixtureVersion {
  kind: FixtureKind;
  name: string;
  version: string;
}

export interface FixtureModelOptions {
  /** Delay per request of the `slow` kind, in ms (script default 400). */
  slowMs?: number;
  /** Share of requests, from 0 to 1, that the `flaky` kind fails (script default 1.0). */
  errorShare?: number;
  /** Maximum run time of the script in ms (default 180 000). */
  timeoutMs?: number;
}

const SCRIPT = path.join(REPO_ROOT, 'test', 'helpers', 'fixture_models.py');
// A hang guard, not a speed check: registering all six kinds took 7-10 s on a 2-core machine, and 38 s
// in the first run after `npm run setup`.
const DEFAULT_TIMEOUT_MS = 180_000;
/** Exit code of fixture_models.py for an invalid command line. */
const EXIT_INVALID_INPUT = 2;
/** Number of last stderr lines quoted in failure messages. */
const STDERR_TAIL_LINES = 40;

function stderrTail(stderr: string): string {
  const lines = stderr.trimEnd().split('\n');
  return lines.slice(-STDERR_TAIL_LINES).join('\n');
}

/**
 * Registers one new version of the registered model `modelName` per kind, in the order given, in the
 * MLflow tracking server at `trackingUri`, and returns the versions in that order. Rejects with the
 * script's stderr if it fails or runs longer than `options.timeoutMs`.
 */
export function registerFixtureModels(
  trackingUri: string,
  modelName: string,
  kinds: FixtureKind[],
  options: FixtureModelOptions = {},
): Promise<FixtureVersion[]> {
  const args = [SCRIPT, '--tracking-uri', trackingUri, '--model-name', modelName, '--kinds', kinds.join(',')];
  if (options.slowMs !== undefined) args.push('--slow-ms', String(options.slowMs));
  if (options.errorShare !== undefined) args.push('--error-share', String(options.errorShare));
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const command = `${PYTHON_BIN} ${args.join(' ')}`;

  return new Promise((resolve, reject) => {
    execFile(
      PYTHON_BIN,
      args,
      {
        timeout: timeoutMs,
        killSignal: 'SIGKILL',
        env: { ...process.env, MLFLOW_DISABLE_TELEMETRY: 'true', PYTHONUNBUFFERED: '1' },
      },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`${failureReason(error, trackingUri, timeoutMs)}\nCommand: ${command}\nLast stderr lines:\n${stderrTail(stderr)}`));
          return;
        }
        try {
          resolve(parseVersions(stdout, kinds));
        } catch (parseError) {
          reject(new Error(`${(parseError as Error).message}\nCommand: ${command}\nLast stderr lines:\n${stderrTail(stderr)}`));
        }
      },
    );
  });
}

function failureReason(error: ExecFileException, trackingUri: string, timeoutMs: number): string {
  if (error.code === 'ENOENT') {
    return `Registering fixture models failed: ${PYTHON_BIN} was not found. Run \`npm run setup\` to install ml/.venv.`;
  }
  if (error.killed) {
    return `Registering fixture models in ${trackingUri} timed out after ${timeoutMs} ms, so the script was killed. Check that the tracking server responds, or raise timeoutMs.`;
  }
  if (error.code === EXIT_INVALID_INPUT) {
    return `fixture_models.py rejected its command line (exit code ${EXIT_INVALID_INPUT}). The stderr lines below name the invalid option.`;
  }
  return `Registering fixture models in ${trackingUri} failed with exit code ${error.code ?? 'none'} (signal ${error.signal ?? 'none'}). Check that the tracking server is running, and read the stderr lines below.`;
}

/** Parses the script's JSON line and checks that it lists one version per requested kind, in order. */
function parseVersions(stdout: string, kinds: FixtureKind[]): FixtureVersion[] {
  let versions: FixtureVersion[];
  try {
    versions = (JSON.parse(stdout) as { versions: FixtureVersion[] }).versions;
  } catch (error) {
    throw new Error(`fixture_models.py printed invalid JSON (${(error as Error).message}): ${JSON.stringify(stdout)}`);
  }
  const returned = Array.isArray(versions) ? versions.map((entry) => entry.kind).join(',') : '(no versions list)';
  if (returned !== kinds.join(',')) {
    throw new Error(`fixture_models.py returned versions for kinds ${returned}, expected ${kinds.join(',')}.`);
  }
  return versions;
}
