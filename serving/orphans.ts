import fs from 'node:fs';
import path from 'node:path';

// Model servers run in their own process groups, so they outlive a serving plane that was killed with
// SIGKILL. Each one gets a pid file here; the next serving plane, and `npm run stack:down`, stop the
// groups whose files are left over.

/** Folder of the pid files of running model servers. */
export function modelServerPidDir(stateDir: string): string {
  return path.join(stateDir, 'run', 'model-servers');
}

export function recordModelServer(pidDir: string, pid: number): void {
  fs.mkdirSync(pidDir, { recursive: true });
  fs.writeFileSync(path.join(pidDir, String(pid)), '');
}

export function forgetModelServer(pidDir: string, pid: number): void {
  fs.rmSync(path.join(pidDir, String(pid)), { force: true });
}

/** True when `pid` is alive and still runs MLflow, so a reused pid of another program is never signalled. */
function isModelServer(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('mlflow');
  } catch {
    return false;
  }
}

/** Sends SIGKILL to every recorded model-server process group and removes the pid files; returns the pids. */
export function reapModelServers(pidDir: string): number[] {
  if (!fs.existsSync(pidDir)) return [];
  const reaped: number[] = [];
  for (const name of fs.readdirSync(pidDir)) {
    const pid = Number(name);
    if (Number.isInteger(pid) && pid > 1 && isModelServer(pid)) {
      try {
        process.kill(-pid, 'SIGKILL');
        reaped.push(pid);
      } catch {
        // The group exited between the check and the signal.
      }
    }
    fs.rmSync(path.join(pidDir, name), { force: true });
  }
  return reaped;
}
