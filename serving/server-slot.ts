import type { ModelServerHandle } from './model-server';

/**
 * The model server of one or more served entities. The active and the pending config share one slot
 * when an update keeps a served entity unchanged, so the slot is retired only when no config uses it
 * any more. With scale to zero the slot outlives its process: it has no handle while scaled to zero,
 * and the next invocation starts a new process in it (a cold start).
 */
export class ServerSlot {
  /** The running process, or undefined while the slot is scaled to zero. */
  handle?: ModelServerHandle;
  inFlight = 0;
  /** Set when the slot was replaced, deleted or the plane is closing: no new invocation may pick it. */
  retired = false;
  /**
   * Set by stop(): the slot never runs a server again. A retired slot that drains still lets the
   * invocations in flight finish a cold start.
   */
  stopped = false;
  /** Set when its process exited without the serving plane stopping it. */
  failed = false;
  /** Time of the last invocation's start or end, in ms since the Unix epoch. */
  lastActivityAt = Date.now();
  /** Time the slot was scaled to zero, in ms since the Unix epoch, or undefined while a server runs. */
  scaledToZeroAt?: number;
  /** Number of servers started by invocations after scale to zero. */
  coldStarts = 0;
  /** Reason of the last failed cold start, cleared by the next successful one. */
  lastColdStartFailure?: string;
  /** Number of servers started again after a crash. */
  restarts = 0;
  /** Start kind of the running process when the deployment did not start it. */
  lastStart?: 'cold start' | 'restart';
  /** Exit times of processes that crashed, in ms since the Unix epoch, newest last. */
  crashTimes: number[] = [];
  /** Reason of the last crash while the restart after it has not succeeded yet. */
  restartingAfterCrash?: string;
  /** The cold start in progress, shared by every invocation that waits for it. */
  coldStart?: { promise: Promise<ModelServerHandle>; abort: AbortController };
  /** Processes that the serving plane stopped on purpose, so their exit is not reported as a crash. */
  private readonly stoppedHandles = new WeakSet<ModelServerHandle>();
  private drainWaiters: Array<() => void> = [];

  constructor(handle: ModelServerHandle) {
    this.handle = handle;
  }

  /** True when invocations may use the slot: not retired and not failed, whether scaled to zero or not. */
  get usable(): boolean {
    return !this.retired && !this.failed;
  }

  acquire(): () => void {
    this.inFlight += 1;
    this.lastActivityAt = Date.now();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inFlight -= 1;
      this.lastActivityAt = Date.now();
      if (this.inFlight === 0) this.resolveDrainWaiters();
    };
  }

  /** True when the plane stopped this process on purpose (scale to zero, replacement, delete, close). */
  stoppedOnPurpose(handle: ModelServerHandle): boolean {
    return this.stoppedHandles.has(handle);
  }

  /** Returns true when the server ran idle for at least `idleMs` and can be scaled to zero now. */
  idleFor(idleMs: number, now: number): boolean {
    return this.usable && this.handle !== undefined && !this.coldStart && this.inFlight === 0 && now - this.lastActivityAt >= idleMs;
  }

  /** Detaches the running process and stops it. The slot stays usable, and the next invocation starts a new one. */
  scaleToZero(): Promise<void> {
    const handle = this.handle;
    if (!handle) return Promise.resolve();
    this.handle = undefined;
    this.scaledToZeroAt = Date.now();
    this.stoppedHandles.add(handle);
    return handle.stop();
  }

  /**
   * Detaches a process that exited on its own, so that the next start (a restart) gets a new one. The
   * slot stays usable. Returns the number of crashes within the last `windowMs`, this one included.
   */
  detachCrashed(reason: string, windowMs: number, now = Date.now()): number {
    this.handle = undefined;
    this.restartingAfterCrash = reason;
    this.crashTimes = [...this.crashTimes.filter((at) => now - at < windowMs), now];
    return this.crashTimes.length;
  }

  /** Attaches the process of a successful cold start or restart. */
  attach(handle: ModelServerHandle): void {
    this.lastStart = this.restartingAfterCrash === undefined ? 'cold start' : 'restart';
    if (this.lastStart === 'restart') this.restarts += 1;
    else this.coldStarts += 1;
    this.handle = handle;
    this.scaledToZeroAt = undefined;
    this.restartingAfterCrash = undefined;
    this.lastColdStartFailure = undefined;
    this.lastActivityAt = Date.now();
  }

  /** Retires the slot: cancels a cold start in progress and stops the running process, if any. */
  stop(): Promise<void> {
    this.retired = true;
    this.stopped = true;
    this.resolveDrainWaiters();
    this.coldStart?.abort.abort(new Error('the model server was stopped'));
    const handle = this.handle;
    if (!handle) return Promise.resolve();
    this.stoppedHandles.add(handle);
    return handle.stop();
  }

  /** Waits until no invocation uses this slot or `timeoutMs` has passed, then retires it. */
  async drainAndStop(timeoutMs: number): Promise<void> {
    this.retired = true;
    if (this.inFlight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.drainWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    await this.stop();
  }

  private resolveDrainWaiters(): void {
    for (const resolve of this.drainWaiters.splice(0)) resolve();
  }
}
