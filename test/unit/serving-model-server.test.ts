import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { findFreePort, MlflowModelServerLauncher, modelServerLogFile } from '../../serving/model-server';

/**
 * Process management tests of MlflowModelServerLauncher. Small Node scripts replace the mlflow binary
 * here, so that a test can produce crashes, hangs and ignored SIGTERMs on demand. The integration
 * tests run the real `mlflow models serve`.
 */

const SCRIPTS: Record<string, string> = {
  // Serves /ping after 200 ms and forks a worker into its process group, like uvicorn with -w.
  ready: `
const http = require('node:http');
const { spawn } = require('node:child_process');
const args = process.argv.slice(2);
const port = Number(args[args.indexOf('-p') + 1]);
console.log('args: ' + args.join(' '));
console.log('tracking uri: ' + process.env.MLFLOW_TRACKING_URI);
console.log('first PATH entry: ' + process.env.PATH.split(':')[0]);
const worker = spawn('sleep', ['1000'], { stdio: 'ignore' });
require('node:fs').writeFileSync(process.env.WORKER_PID_FILE, String(worker.pid));
setTimeout(() => {
  http.createServer((req, res) => res.writeHead(req.url === '/ping' ? 200 : 404).end()).listen(port, '127.0.0.1');
}, 200);
`,
  // Prints the cause first and then a traceback longer than the quoted tail, like mlflow does.
  crash: `
console.error('bash: line 1: exec: uvicorn: not found');
for (let i = 0; i < 30; i += 1) console.error('  File "cli.py", line ' + i + ', in invoke');
console.error('Exception: Command returned non zero return code. Return code = 127');
process.exit(3);
`,
  hang: `
console.log('loading forever');
setInterval(() => undefined, 1000);
`,
  // Returns 200 for /ping but ignores SIGTERM, so only SIGKILL ends it.
  stubborn: `
const http = require('node:http');
const args = process.argv.slice(2);
const port = Number(args[args.indexOf('-p') + 1]);
process.on('SIGTERM', () => console.log('ignoring SIGTERM'));
http.createServer((req, res) => res.writeHead(200).end()).listen(port, '127.0.0.1');
`,
};

let workDir: string;
const bins: Record<string, string> = {};
const logger = pino({ level: 'silent' });

beforeAll(() => {
  workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'serving-model-server-test-'));
  for (const [name, body] of Object.entries(SCRIPTS)) {
    const file = path.join(workDir, `fake-mlflow-${name}.js`);
    fs.writeFileSync(file, `#!/usr/bin/env node\n${body}`, { mode: 0o755 });
    bins[name] = file;
  }
  process.env.WORKER_PID_FILE = path.join(workDir, 'worker.pid');
});

afterAll(() => {
  delete process.env.WORKER_PID_FILE;
  fs.rmSync(workDir, { recursive: true, force: true });
});

function launcher(bin: string, extra: { readyTimeoutMs?: number; stopGraceMs?: number } = {}) {
  return new MlflowModelServerLauncher({
    trackingUri: 'http://127.0.0.1:5999',
    logsDir: path.join(workDir, 'logs'),
    logger,
    mlflowBin: bin,
    pollIntervalMs: 50,
    ...extra,
  });
}

const spec = {
  endpoint: 'hotel',
  servedEntityName: 'tiny_model-1',
  entityName: 'mlops_dev.acikgozm.tiny_model',
  entityVersion: '1',
  workers: 2,
};

/** True while the process exists and is not a zombie. */
function isRunning(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

describe('MlflowModelServerLauncher', () => {
  test('findFreePort returns a usable port', async () => {
    const port = await findFreePort('127.0.0.1');
    expect(port).toBeGreaterThan(0);
    expect(port).toBeLessThan(65536);
  });

  test('start waits for ping and stop ends the group', async () => {
    const handle = await launcher(bins.ready).start(spec);
    expect(handle.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const ping = await fetch(`${handle.url}/ping`);
    expect(ping.status).toBe(200);

    const logFile = modelServerLogFile(path.join(workDir, 'logs'), 'hotel', 'tiny_model-1');
    const log = fs.readFileSync(logFile, 'utf8');
    const port = handle.url.split(':')[2];
    expect(log).toContain(
      `args: models serve -m models:/mlops_dev.acikgozm.tiny_model/1 --env-manager local -h 127.0.0.1 -p ${port} -w 2`,
    );
    expect(log).toContain('tracking uri: http://127.0.0.1:5999');
    expect(log).toContain(`first PATH entry: ${workDir}`);

    const workerPid = Number(fs.readFileSync(process.env.WORKER_PID_FILE as string, 'utf8'));
    expect(isRunning(workerPid)).toBe(true);
    const exits: Array<number | null> = [];
    handle.onExit((code) => exits.push(code));

    await handle.stop();
    expect(isRunning(handle.pid)).toBe(false);
    expect(isRunning(workerPid)).toBe(false);
    expect(exits).toHaveLength(1);
  });

  test('exit before ready reports code and log tail', async () => {
    const error = await launcher(bins.crash)
      .start(spec)
      .then(
        () => undefined,
        (rejection: Error) => rejection,
      );
    expect(error?.message).toContain('exited with code 3');
    expect(error?.message).toContain('Return code = 127');
    expect(error?.message).toContain('Earlier error lines');
    expect(error?.message).toContain('uvicorn: not found');
  });

  test('ready timeout stops the process', async () => {
    const error = await launcher(bins.hang, { readyTimeoutMs: 600 })
      .start(spec)
      .then(
        () => undefined,
        (rejection: Error) => rejection,
      );
    expect(error?.message).toContain('within 600 ms');
    expect(error?.message).toContain('loading forever');
    const pid = Number(/pid (\d+)/.exec(error?.message ?? '')?.[1]);
    expect(isRunning(pid)).toBe(false);
  });

  test('abort cancels a starting server', async () => {
    const controller = new AbortController();
    const starting = launcher(bins.hang).start({ ...spec, signal: controller.signal });
    setTimeout(() => controller.abort(), 300);
    await expect(starting).rejects.toThrow(/start was canceled/);
  });

  test('stop escalates to SIGKILL after grace', async () => {
    const handle = await launcher(bins.stubborn, { stopGraceMs: 500 }).start(spec);
    const startedAt = Date.now();
    await handle.stop();
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(450);
    expect(isRunning(handle.pid)).toBe(false);
  });

  test('missing binary fails with its path', async () => {
    const missing = path.join(workDir, 'no-such-mlflow');
    await expect(launcher(missing).start(spec)).rejects.toThrow(`Failed to run ${missing}`);
  });
});
