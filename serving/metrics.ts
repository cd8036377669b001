import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Prometheus metrics of one serving plane, kept in a registry of its own so that two planes in one
 * process (as in tests) never share series. `GET /metrics` exposes every series and
 * `GET /api/2.0/serving-endpoints/{name}/metrics` those of one endpoint.
 */

/** Labels of every per-entity series. All three entity labels are "" when no served entity was chosen. */
export interface EntityLabels {
  endpoint: string;
  served_entity: string;
  entity_name: string;
  entity_version: string;
}

const ENTITY_LABEL_NAMES = ['endpoint', 'served_entity', 'entity_name', 'entity_version'] as const;

/** Request latency buckets in seconds: 1 ms to 10 s, since one-record requests take a few ms. */
const REQUEST_DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Cold start buckets in seconds: a model server loads its model in seconds to minutes. */
const COLD_START_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export class ServingMetrics {
  readonly registry = new Registry();
  private readonly requests: Counter<(typeof ENTITY_LABEL_NAMES)[number] | 'status'>;
  private readonly errors: Counter<(typeof ENTITY_LABEL_NAMES)[number]>;
  private readonly requestDuration: Histogram<(typeof ENTITY_LABEL_NAMES)[number]>;
  private readonly coldStarts: Counter<(typeof ENTITY_LABEL_NAMES)[number]>;
  private readonly coldStartDuration: Histogram<(typeof ENTITY_LABEL_NAMES)[number]>;
  private readonly endpointReady: Gauge<'endpoint'>;
  private readonly payloadRowsDropped: Counter<'endpoint'>;

  /** `readyStates` returns the endpoints that exist at scrape time, each with true when it is READY. */
  constructor(readyStates: () => Iterable<[string, boolean]>) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: 'serving_requests_total',
      help: 'Completed invocations, by the HTTP status sent to the client.',
      labelNames: [...ENTITY_LABEL_NAMES, 'status'],
      registers,
    });
    this.errors = new Counter({
      name: 'serving_request_errors_total',
      help: 'Invocations that failed at the model server: its responses with status >= 400, and 503 or 504 when it could not be reached, started or timed out.',
      labelNames: ENTITY_LABEL_NAMES,
      registers,
    });
    this.requestDuration = new Histogram({
      name: 'serving_request_duration_seconds',
      help: 'Time from receiving an invocation to sending its response, cold starts included.',
      labelNames: ENTITY_LABEL_NAMES,
      buckets: REQUEST_DURATION_BUCKETS,
      registers,
    });
    this.coldStarts = new Counter({
      name: 'serving_cold_starts_total',
      help: 'Model servers started again by an invocation after scale to zero, counted when ready.',
      labelNames: ENTITY_LABEL_NAMES,
      registers,
    });
    this.coldStartDuration = new Histogram({
      name: 'serving_cold_start_duration_seconds',
      help: 'Time from the start of a scaled-to-zero model server until it was ready.',
      labelNames: ENTITY_LABEL_NAMES,
      buckets: COLD_START_BUCKETS,
      registers,
    });
    this.endpointReady = new Gauge({
      name: 'serving_endpoint_ready',
      help: 'State of each endpoint: 1 when state.ready is READY, 0 otherwise.',
      labelNames: ['endpoint'],
      registers,
      // Read at scrape time, so the gauge never lags behind the endpoint store and deleted endpoints drop out.
      collect() {
        this.reset();
        for (const [endpoint, ready] of readyStates()) this.set({ endpoint }, ready ? 1 : 0);
      },
    });
    this.payloadRowsDropped = new Counter({
      name: 'serving_payload_rows_dropped_total',
      help: 'Inference table rows dropped because the buffer of unwritten rows was full.',
      labelNames: ['endpoint'],
      registers,
    });
  }

  /** Records one completed invocation. `modelServerError` marks failures that count as errors. */
  recordRequest(labels: EntityLabels, status: number, durationSeconds: number, modelServerError: boolean): void {
    this.requests.inc({ ...labels, status: String(status) });
    this.requestDuration.observe(labels, durationSeconds);
    if (modelServerError) this.errors.inc(labels);
  }

  recordColdStart(labels: EntityLabels, durationSeconds: number): void {
    this.coldStarts.inc(labels);
    this.coldStartDuration.observe(labels, durationSeconds);
  }

  recordDroppedPayloadRows(endpoint: string, count: number): void {
    this.payloadRowsDropped.inc({ endpoint }, count);
  }

  /** Returns every series in the Prometheus text format. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /**
   * Returns the series whose `endpoint` label is `endpoint`, in the Prometheus text format. A metric
   * without such series is left out, with its HELP and TYPE lines.
   */
  async endpointText(endpoint: string): Promise<string> {
    const label = `endpoint="${escapeLabelValue(endpoint)}"`;
    const output: string[] = [];
    let header: string[] = [];
    let headerWritten = false;
    for (const line of (await this.registry.metrics()).split('\n')) {
      if (line.startsWith('# HELP ')) {
        header = [line];
        headerWritten = false;
      } else if (line.startsWith('#')) {
        header.push(line);
      } else if (line !== '' && hasLabel(line, label)) {
        if (!headerWritten) output.push(...header);
        headerWritten = true;
        output.push(line);
      }
    }
    return output.length === 0 ? '' : `${output.join('\n')}\n`;
  }

  /** Removes every series of `endpoint`, so a deleted endpoint leaves nothing behind. */
  async removeEndpoint(endpoint: string): Promise<void> {
    const metrics = [this.requests, this.errors, this.requestDuration, this.coldStarts, this.coldStartDuration, this.payloadRowsDropped];
    for (const metric of metrics) {
      const seen = new Set<string>();
      for (const value of (await metric.get()).values) {
        if (value.labels.endpoint !== endpoint) continue;
        // Histogram values carry an `le` label per bucket, which is not part of the series' labels.
        const labels: Record<string, string | number | undefined> = { ...value.labels };
        delete labels.le;
        const key = JSON.stringify(labels);
        if (seen.has(key)) continue;
        seen.add(key);
        metric.remove(labels as never);
      }
    }
  }
}

/** True when a sample line has `label` (such as `endpoint="hotel"`) as one of its labels. */
function hasLabel(line: string, label: string): boolean {
  const index = line.indexOf(label);
  if (index <= 0) return false;
  const before = line[index - 1];
  const after = line[index + label.length];
  return (before === '{' || before === ',') && (after === ',' || after === '}');
}

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}
