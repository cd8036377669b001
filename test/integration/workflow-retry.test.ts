import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { endpointBusy, invalidInput } from '../../common/errors';
import type { DeployModelVersionInput } from '../../workflows/deploy';
import { deployModelVersion } from '../../workflows';
import type { ServingSpec } from '../../workflows/types';
import { createTestEnvironment } from '../helpers/workflow-env';

// Orchestration tests on a real Temporal dev server started by the SDK's test harness. The activities
// are stand-ins that count their attempts, so the tests can check how the workflow's retry policies
// treat each failure type. The end-to-end test runs the real activities.

let env: TestWorkflowEnvironment;

beforeAll(async () => {
  env = await createTestEnvironment();
}, 120_000);

afterAll(async () => {
  await env?.teardown();
});

const serving: ServingSpec = {
  endpoint: 'retry-test-serving',
  workloadSize: 'Small',
  scaleToZeroEnabled: true,
  readyTimeoutSeconds: 30,
  pollIntervalSeconds: 1,
  conflictRetry: { maximumAttempts: 4, intervalSeconds: 1 },
};

const input: DeployModelVersionInput = {
  serving,
  model: { name: 'mlops_dev.acikgozm.hotel_reservations_model_basic', version: '3' },
  test: { catalog: 'mlops_dev', schema: 'acikgozm', name: 'test_set', version: 1 },
  inputs: ['lead_time'],
};

async function runDeploy(deploy: () => Promise<unknown>, taskQueue: string) {
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowsPath: require.resolve('../../workflows'),
    activities: {
      readServingEndpoint: async () => ({ endpoint: serving.endpoint, exists: false }),
      deployServingEndpoint: deploy,
      waitForEndpointReady: async () => ({ endpoint: serving.endpoint, configVersion: 2 }),
      smokeTestEndpoint: async () => ({
        endpoint: serving.endpoint,
        url: 'http://127.0.0.1/invocations',
        request: {},
        predictions: [0],
        latencyMs: 1,
      }),
    },
  });
  return worker.runUntil(
    env.client.workflow.execute(deployModelVersion, { taskQueue, workflowId: `${taskQueue}-${Date.now()}`, args: [input] }),
  );
}

describe('deployModelVersion retry policy', () => {
  it('retries 409 conflicts until the endpoint accepts the update', async () => {
    let attempts = 0;
    const result = await runDeploy(async () => {
      attempts += 1;
      if (attempts <= 2) throw endpointBusy('Serving endpoint retry-test-serving is busy (409 RESOURCE_CONFLICT)');
      return { endpoint: serving.endpoint, unchanged: false, configVersion: 2 };
    }, 'retry-conflicts');
    expect(attempts).toBe(3);
    expect(result.deployment.configVersion).toBe(2);
    expect(result.smokeTest.predictions).toEqual([0]);
  }, 60_000);

  it('fails loudly when conflicts outlast the maximum attempts', async () => {
    let attempts = 0;
    const run = runDeploy(async () => {
      attempts += 1;
      throw endpointBusy('Serving endpoint retry-test-serving is busy (409 RESOURCE_CONFLICT)');
    }, 'retry-exhausted');
    const error = await run.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    // The workflow replaces the last attempt's failure with one that names the exhausted policy.
    const failure = (error as WorkflowFailedError).cause as ApplicationFailure;
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure.type).toBe('EndpointBusy');
    expect(failure.message).toMatch(/after 4 attempts 1 s apart/);
    expect(attempts).toBe(serving.conflictRetry.maximumAttempts);
  }, 60_000);

  it('does not retry invalid input', async () => {
    let attempts = 0;
    const error = await runDeploy(async () => {
      attempts += 1;
      throw invalidInput('served entity workload_size Huge is invalid');
    }, 'retry-invalid').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WorkflowFailedError);
    expect(((error as WorkflowFailedError).cause?.cause as ApplicationFailure).type).toBe('InvalidInput');
    expect(attempts).toBe(1);
  }, 60_000);
});
