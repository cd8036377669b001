import { judgeCanary } from '../../activities/serving';
import { buildPipelineSpec, loadProjectConfig } from '../../config/load';
import { ProjectConfigSchema } from '../../config/schema';
import { entityTraffic, latencyQuantileMs, parsePrometheusText, trafficSince } from '../../platform/serving/metrics';
import { canaryTarget, mainEntity, matchesTarget, servedEntity, servedEntityName, singleEntityTarget } from '../../workflows/serving-config';
import type { CanarySpec, ServingSpec } from '../../workflows/types';

const serving: ServingSpec = {
  endpoint: 'hotel-reservations-model-basic-serving',
  workloadSize: 'Small',
  scaleToZeroEnabled: true,
  readyTimeoutSeconds: 60,
  pollIntervalSeconds: 1,
  conflictRetry: { maximumAttempts: 3, intervalSeconds: 1 },
};
const MODEL = 'mlops_dev.acikgozm.hotel_reservations_model_basic';

function metricsText(entity: string, requests: number, errors: number, buckets: Array<[string, number]>): string {
  const labels = `endpoint="e",served_entity="${entity}",entity_name="m",entity_version="1"`;
  return [
    '# HELP serving_requests_total Invocations.',
    '# TYPE serving_requests_total counter',
    `serving_requests_total{${labels},status="200"} ${requests - errors}`,
    `serving_requests_total{${labels},status="500"} ${errors}`,
    `serving_request_errors_total{${labels}} ${errors}`,
    ...buckets.map(([le, count]) => `serving_request_duration_seconds_bucket{le="${le}",${labels}} ${count}`),
    `serving_requests_total{endpoint="other",served_entity="${entity}",entity_name="m",entity_version="1",status="200"} 999`,
  ].join('\n');
}

describe('Prometheus metrics of a served entity', () => {
  const before = entityTraffic(parsePrometheusText(metricsText('a-1', 10, 1, [['0.01', 5], ['0.1', 9], ['+Inf', 10]])), 'e', 'a-1');
  const after = entityTraffic(parsePrometheusText(metricsText('a-1', 110, 6, [['0.01', 55], ['0.1', 99], ['+Inf', 110]])), 'e', 'a-1');

  it('sums the series of one endpoint and served entity only', () => {
    expect(before).toEqual({
      requests: 10,
      errors: 1,
      latencyBuckets: [
        { le: 0.01, count: 5 },
        { le: 0.1, count: 9 },
        { le: Infinity, count: 10 },
      ],
    });
  });

  it('takes the difference between two readings', () => {
    const delta = trafficSince(before, after);
    expect(delta.requests).toBe(100);
    expect(delta.errors).toBe(5);
    expect(delta.latencyBuckets.map((bucket) => bucket.count)).toEqual([50, 90, 100]);
  });

  it('counts from zero when the counters went down after a restart', () => {
    expect(trafficSince(after, before).requests).toBe(10);
  });

  it('reads a quantile as the upper bound of its bucket', () => {
    const delta = trafficSince(before, after);
    expect(latencyQuantileMs(delta, 0.5)).toBe(10);
    expect(latencyQuantileMs(delta, 0.9)).toBe(100);
    expect(latencyQuantileMs(delta, 0.95)).toBe(Infinity);
    expect(latencyQuantileMs({ requests: 0, errors: 0, latencyBuckets: [] }, 0.95)).toBeUndefined();
  });

  it('parses escaped label values', () => {
    const [sample] = parsePrometheusText('x{a="say \\"hi\\"",b="2"} 3.5');
    expect(sample).toEqual({ name: 'x', labels: { a: 'say "hi"', b: '2' }, value: 3.5 });
  });
});

describe('canary verdict', () => {
  const canary: CanarySpec = {
    trafficPercentage: 10,
    durationSeconds: 60,
    checkIntervalSeconds: 5,
    minRequests: 20,
    maxErrorRate: 0.05,
    maxP95LatencyMs: 100,
    onInsufficientTraffic: 'rollback',
  };
  const traffic = (requests: number, errors: number, fastShare = 1) => ({
    requests,
    errors,
    latencyBuckets: [
      { le: 0.05, count: Math.round(requests * fastShare) },
      { le: 1, count: requests },
      { le: Infinity, count: requests },
    ],
  });

  it('waits while the window is open and nothing is wrong', () => {
    expect(judgeCanary(traffic(30, 0), canary, false)).toBeUndefined();
  });

  it('rolls back early on a high error rate once enough requests arrived', () => {
    expect(judgeCanary(traffic(10, 5), canary, false)).toBeUndefined();
    expect(judgeCanary(traffic(40, 4), canary, false)).toMatchObject({ verdict: 'rollback', errorRate: 0.1 });
  });

  it('rolls back on a high p95 latency', () => {
    const verdict = judgeCanary(traffic(40, 0, 0.5), canary, false);
    expect(verdict).toMatchObject({ verdict: 'rollback', p95LatencyMs: 1000 });
    expect(verdict?.reason).toMatch(/p95 latency/);
  });

  it('promotes a healthy canary at the end of the window', () => {
    expect(judgeCanary(traffic(40, 1), canary, true)).toMatchObject({ verdict: 'promote', requests: 40, errors: 1, p95LatencyMs: 50 });
  });

  it('applies on_insufficient_traffic when too few requests arrived', () => {
    expect(judgeCanary(traffic(5, 0), canary, true)).toMatchObject({ verdict: 'rollback' });
    expect(judgeCanary(traffic(5, 0), { ...canary, onInsufficientTraffic: 'promote' }, true)).toMatchObject({ verdict: 'promote' });
  });
});

describe('endpoint configs', () => {
  const v1 = servedEntity(serving, MODEL, '1');
  const v2 = servedEntity(serving, MODEL, '2');

  it('names served entities as Databricks does by default', () => {
    expect(servedEntityName(MODEL, '7')).toBe('hotel_reservations_model_basic-7');
  });

  it('compares entities and routes, whatever their order', () => {
    const split = canaryTarget(v1, v2, 10);
    expect(matchesTarget(split, { entities: [...split.entities].reverse(), routes: [...split.routes].reverse() })).toBe(true);
    expect(matchesTarget(split, canaryTarget(v1, v2, 20))).toBe(false);
    expect(matchesTarget(singleEntityTarget(v1), singleEntityTarget(v2))).toBe(false);
    expect(matchesTarget(singleEntityTarget(v1), singleEntityTarget({ ...v1, workload_size: 'Medium' }))).toBe(false);
    expect(matchesTarget(undefined, singleEntityTarget(v1))).toBe(false);
  });

  it('picks the entity with the largest share as the stable side', () => {
    expect(mainEntity(canaryTarget(v1, v2, 10))?.name).toBe(v1.name);
    expect(mainEntity(canaryTarget(v1, v2, 10), v1.name)?.name).toBe(v2.name);
  });
});

describe('serving config', () => {
  const config = loadProjectConfig();

  it('carries the deploy alias, smoke test, payload table and rollout into the spec', () => {
    const spec = buildPipelineSpec(config, { env: 'dev', sourcePath: '/tmp/x.csv', gitSha: 'abc', branch: 'main' });
    expect(spec.serving).toMatchObject({
      deployAlias: 'champion',
      inferenceTable: { catalog: config.environments.dev.catalog, schema: config.environments.dev.schema },
      smokeTest: { records: 20, requests: 5, maxLatencyMs: 2000 },
      rollout: { strategy: 'direct' },
    });
  });

  it('rejects a deploy alias the pipeline never moves', () => {
    const raw = structuredClone(config) as Record<string, unknown> & { serving: Record<string, unknown> };
    raw.serving.deploy_alias = 'staging';
    const parsed = ProjectConfigSchema.safeParse(raw);
    expect(parsed.success).toBe(false);
    expect(JSON.stringify(parsed.error?.issues)).toMatch(/deploy_alias/);
  });

  it('rejects a canary share of 100 percent', () => {
    const raw = structuredClone(config) as Record<string, unknown> & { serving: { rollout: { canary: Record<string, unknown> } } };
    raw.serving.rollout.canary.traffic_percentage = 100;
    expect(ProjectConfigSchema.safeParse(raw).success).toBe(false);
  });
});
