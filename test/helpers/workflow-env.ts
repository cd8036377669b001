import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { ensureTemporalCli } from '../../stack/provision';
import { SEARCH_ATTRIBUTES } from '../../workflows/search-attributes';

/** Starts a real Temporal dev server from the project's CLI binary, with the search attributes registered. */
export async function createTestEnvironment(): Promise<TestWorkflowEnvironment> {
  Runtime.install({ logger: new DefaultLogger('ERROR', () => undefined) });
  return TestWorkflowEnvironment.createLocal({
    server: { executable: { type: 'existing-path', path: await ensureTemporalCli() }, searchAttributes: SEARCH_ATTRIBUTES },
  });
}

const TABLE = { catalog: 'mlops_dev', schema: 'acikgozm', version: 1 };

/**
 * Stand-ins for every activity of trainAndDeploy that return plausible results at once. Tests replace
 * the ones whose behaviour they check.
 */
export function standInActivities(overrides: Record<string, (...args: never[]) => unknown> = {}): Record<string, unknown> {
  return {
    ingestBookings: async () => ({
      train: { ...TABLE, name: 'train_set' },
      test: { ...TABLE, name: 'test_set' },
      extra: { ...TABLE, name: 'extra_set' },
      reused: true,
      report: { sourceSha256: 'abc' },
      changes: {},
    }),
    updateFeatureTable: async () => ({ table: { ...TABLE, name: 'hotel_features' }, changes: {}, reused: true }),
    trainModel: async () => ({ modelDir: '/m', evaluationDir: '/e', metrics: { roc_auc: 0.92 }, params: {}, trainRows: 1, testRows: 1, reused: false }),
    logTrainingRun: async () => ({ runId: 'r', experimentId: '1', modelId: 'm', modelSource: 's', runUrl: 'u', reused: false }),
    registerModelVersion: async (input: { modelName: string }) => ({ name: input.modelName, version: '2', alias: 'latest-model' }),
    resolveAliasVersion: async () => ({ version: '2' }),
    readServingEndpoint: async (input: { endpoint: string }) => ({ endpoint: input.endpoint, exists: false }),
    deployServingEndpoint: async (target: { serving: { endpoint: string } }) => ({ endpoint: target.serving.endpoint, unchanged: false }),
    deleteServingEndpoint: async (input: { endpoint: string }) => ({ endpoint: input.endpoint, deleted: true }),
    waitForEndpointReady: async () => ({ endpoint: 'e', configVersion: 1 }),
    smokeTestEndpoint: async () => ({ endpoint: 'e', url: 'u', request: {}, predictions: [0], latencyMs: 1 }),
    ...overrides,
  };
}
