/**
 * A client that keeps querying an endpoint while its version is swapped, and records every failed
 * request and every change of the served entity. The demo and the swap test use it to show that an
 * update drops no request.
 */

export interface PollerFailure {
  /** ms since the poller started */
  at: number;
  status?: number;
  error: string;
}

export interface PollerReport {
  requests: number;
  failures: PollerFailure[];
  /** Served entities in the order they responded, with the count of consecutive responses of each. */
  servedSequence: Array<{ servedEntity: string; responses: number }>;
  durationMs: number;
}

export class EndpointPoller {
  private running = false;
  private loop?: Promise<void>;
  private started = 0;
  private readonly report: PollerReport = { requests: 0, failures: [], servedSequence: [], durationMs: 0 };

  /**
   * @param url invocations URL of the endpoint
   * @param body request body, such as `{dataframe_records: [...]}`
   * @param intervalMs pause between the end of one request and the start of the next
   */
  constructor(
    private readonly url: string,
    private readonly body: Record<string, unknown>,
    private readonly intervalMs = 50,
    private readonly timeoutMs = 30_000,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.started = Date.now();
    this.loop = this.run();
  }

  /** Stops after the request in flight and returns what was recorded. */
  async stop(): Promise<PollerReport> {
    this.running = false;
    await this.loop;
    return { ...this.report, durationMs: Date.now() - this.started };
  }

  private async run(): Promise<void> {
    while (this.running) {
      this.report.requests += 1;
      const at = Date.now() - this.started;
      try {
        const response = await fetch(this.url, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify(this.body),
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        const text = await response.text();
        if (response.status !== 200) {
          this.report.failures.push({ at, status: response.status, error: text.slice(0, 300) });
        } else {
          this.recordServed(response.headers.get('served-model-name') ?? '(unnamed)');
        }
      } catch (error) {
        this.report.failures.push({ at, error: error instanceof Error ? error.message : String(error) });
      }
      await new Promise((resolve) => setTimeout(resolve, this.intervalMs));
    }
  }

  private recordServed(servedEntity: string): void {
    const last = this.report.servedSequence[this.report.servedSequence.length - 1];
    if (last?.servedEntity === servedEntity) last.responses += 1;
    else this.report.servedSequence.push({ servedEntity, responses: 1 });
  }
}

/** Formats the report in one line, such as `812 requests in 41.2 s, 0 failed; served hotel_model-1 (402) then hotel_model-2 (410)`. */
export function formatPollerReport(report: PollerReport): string {
  const served = report.servedSequence.map((entry) => `${entry.servedEntity} (${entry.responses})`).join(' then ');
  const failures = report.failures.slice(0, 3).map((failure) => `${failure.status ?? 'no response'} ${failure.error}`).join('; ');
  return (
    `${report.requests} requests in ${(report.durationMs / 1000).toFixed(1)} s, ${report.failures.length} failed` +
    `${failures ? ` (${failures})` : ''}; served ${served || 'nothing'}`
  );
}
