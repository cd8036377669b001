/**
 * Reads the Prometheus text that `GET /api/2.0/serving-endpoints/{name}/metrics` returns, as far as the
 * canary check needs it: the request, error and latency series of one served entity.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Traffic figures of one served entity, cumulative since its model server's series started. */
export interface EntityTraffic {
  requests: number;
  errors: number;
  /** Cumulative latency histogram: upper bound in seconds (Infinity for +Inf) to request count. */
  latencyBuckets: Array<{ le: number; count: number }>;
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function unescapeLabel(value: string): string {
  return value.replace(/\\(["\\n])/g, (_, char: string) => (char === 'n' ? '\n' : char));
}

function parseValue(text: string): number {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  return Number(text);
}

/** Parses the samples of a Prometheus text exposition; comments and blank lines are skipped. */
export function parsePrometheusText(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const match = SAMPLE_LINE.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const label of (match[2] ?? '').matchAll(LABEL)) labels[label[1]] = unescapeLabel(label[2]);
    samples.push({ name: match[1], labels, value: parseValue(match[3]) });
  }
  return samples;
}

/** Sums the request, error and latency series of one served entity of one endpoint. */
export function entityTraffic(samples: Sample[], endpoint: string, servedEntity: string): EntityTraffic {
  const ofEntity = (sample: Sample): boolean =>
    sample.labels.endpoint === endpoint && sample.labels.served_entity === servedEntity;
  let requests = 0;
  let errors = 0;
  const buckets = new Map<number, number>();
  for (const sample of samples) {
    if (!ofEntity(sample)) continue;
    if (sample.name === 'serving_requests_total') requests += sample.value;
    else if (sample.name === 'serving_request_errors_total') errors += sample.value;
    else if (sample.name === 'serving_request_duration_seconds_bucket') {
      const le = parseValue(sample.labels.le ?? '+Inf');
      buckets.set(le, (buckets.get(le) ?? 0) + sample.value);
    }
  }
  const latencyBuckets = [...buckets.entries()].map(([le, count]) => ({ le, count })).sort((a, b) => a.le - b.le);
  return { requests, errors, latencyBuckets };
}

/** Traffic between two readings. A counter that went down (a restarted plane) counts from zero. */
export function trafficSince(before: EntityTraffic, after: EntityTraffic): EntityTraffic {
  const delta = (a: number, b: number): number => (b >= a ? b - a : b);
  const earlier = new Map(before.latencyBuckets.map((bucket) => [bucket.le, bucket.count]));
  const reset = after.requests < before.requests;
  return {
    requests: reset ? after.requests : delta(before.requests, after.requests),
    errors: reset ? after.errors : delta(before.errors, after.errors),
    latencyBuckets: after.latencyBuckets.map((bucket) => ({
      le: bucket.le,
      count: reset ? bucket.count : delta(earlier.get(bucket.le) ?? 0, bucket.count),
    })),
  };
}

/**
 * Upper bound in ms of the histogram bucket that holds the given quantile, the conservative reading
 * of a Prometheus histogram. Returns undefined without observations, Infinity past the last bound.
 */
export function latencyQuantileMs(traffic: EntityTraffic, quantile: number): number | undefined {
  const total = traffic.latencyBuckets.find((bucket) => bucket.le === Infinity)?.count ?? traffic.requests;
  if (total <= 0) return undefined;
  const rank = quantile * total;
  for (const bucket of traffic.latencyBuckets) {
    if (bucket.count >= rank) return bucket.le === Infinity ? Infinity : bucket.le * 1000;
  }
  return Infinity;
}
