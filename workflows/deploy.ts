import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { controlPlaneRetry, endpointUpdateRetry, endpointWaitRetry } from './retry-policies';
import type { EndpointDeployment, PipelineSpec, SmokeTestResult, TableRef } from './types';

const { smokeTestEndpoint } = proxyActivities<Activities>({
  startToCloseTimeout: '5m',
  retry: controlPlaneRetry,
});

/**
 * Points the endpoint at a model version, waits until it serves that version, and smoke-tests it with a
 * record from the test table. Timeouts and the conflict retry come from the spec, so tests can use
 * seconds where production waits minutes.
 */
export async function deployAndVerify(
  serving: PipelineSpec['serving'],
  model: { name: string; version: string },
  smokeTest: { test: TableRef; inputs: string[]; output?: 'label' | 'label_and_probability' },
): Promise<{ deployment: EndpointDeployment; smokeTest: SmokeTestResult }> {
  const { deployServingEndpoint } = proxyActivities<Activities>({
    startToCloseTimeout: '2m',
    retry: endpointUpdateRetry(serving.conflictRetry),
  });
  const { waitForEndpointReady } = proxyActivities<Activities>({
    startToCloseTimeout: `${serving.readyTimeoutSeconds + 60}s`,
    heartbeatTimeout: `${Math.max(30, serving.pollIntervalSeconds * 5)}s`,
    retry: endpointWaitRetry,
  });

  const target = { serving, modelName: model.name, version: model.version };
  const deployment = await deployServingEndpoint(target);
  await waitForEndpointReady(target);
  const result = await smokeTestEndpoint({ endpoint: serving.endpoint, ...smokeTest });
  return { deployment, smokeTest: result };
}

export interface DeployModelVersionInput {
  serving: PipelineSpec['serving'];
  model: { name: string; version: string };
  test: TableRef;
  inputs: string[];
  /** Prediction shape of the model (default label: 0 or 1). */
  output?: 'label' | 'label_and_probability';
}

/** Deploys an already registered model version, for redeploys and rollbacks from the CLI. */
export async function deployModelVersion(input: DeployModelVersionInput): Promise<{
  deployment: EndpointDeployment;
  smokeTest: SmokeTestResult;
}> {
  return deployAndVerify(input.serving, input.model, { test: input.test, inputs: input.inputs, output: input.output });
}
