import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { invalidInput } from '../../common/errors';
import { trainAndDeploy } from '../../workflows';
import { variantWorkflowId } from '../../workflows/ids';
import type { TrainingSpec } from '../../workflows/types';
import { testSpec } from '../helpers/fixtures';
import { createTestEnvironment, standInActivities } from '../helpers/workflow-env';

// Variant child workflows on a real Temporal dev server with stand-in activities: every variant runs
// to its end, and a failing one fails the pipeline run with its name while the others still deploy.

let env: TestWorkflowEnvironment;

beforeAll(async () => {
  env = await createTestEnvironment();
}, 120_000);

afterAll(async () => {
  await env?.teardown();
});


async function runWith(taskQueue: string, failing: TrainingSpec['flavor'] | undefined) {
  const deployed: string[] = [];
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowsPath: require.resolve('../../workflows'),
    activities: standInActivities({
      trainModel: async (input: { training: TrainingSpec }) => {
        if (input.training.flavor === failing) throw invalidInput(`LightGBM rejected the ${failing} parameters`);
        return { modelDir: '/m', evaluationDir: '/e', metrics: { roc_auc: 0.9 }, params: {}, trainRows: 1, testRows: 1, reused: false };
      },
      registerModelVersion: async (input: { modelName: string }) => ({ name: input.modelName, version: '1', alias: 'latest-model' }),
      evaluatePromotion: async () => ({
        decision: 'first_champion',
        promote: true,
        metric: 'roc_auc',
        margin: 0,
        challengerVersion: '1',
        challengerScore: 0.9,
        testTable: 't@1',
        championRescored: false,
      }),
      applyPromotion: async (input: { decision: object; approval: object }) => ({
        ...input.decision,
        approval: input.approval,
        promoted: true,
        championAlias: 'champion',
        championVersionAfter: '1',
      }),
      deployServingEndpoint: async (target: { serving: { endpoint: string } }) => {
        deployed.push(target.serving.endpoint);
        return { endpoint: target.serving.endpoint, unchanged: false };
      },
    }),
  });
  const workflowId = `${taskQueue}-${Date.now()}`;
  const outcome = await worker.runUntil(
    env.client.workflow
      .execute(trainAndDeploy, { taskQueue, workflowId, args: [testSpec('/tmp/variants.csv', {}, ['all'])] })
      .catch((error: Error) => error),
  );
  return { outcome, deployed, workflowId };
}

describe('variant child workflows', () => {
  it('trains every variant in its own run', async () => {
    const { outcome, deployed, workflowId } = await runWith('variants-all', undefined);
    expect(outcome).not.toBeInstanceOf(Error);
    const result = outcome as Awaited<ReturnType<typeof trainAndDeploy>>;
    expect(result.variants.map((variant) => variant.variant)).toEqual(['basic', 'custom', 'feature_lookup']);
    expect(result.variants[2].featureTable?.name).toBe('hotel_features');
    expect(deployed.sort()).toEqual([
      'hotel-reservations-model-basic-serving',
      'hotel-reservations-model-custom-serving',
      'hotel-reservations-model-fe-serving',
    ]);
    const child = await env.client.workflow.getHandle(variantWorkflowId(workflowId, 'custom')).describe();
    expect(child.status.name).toBe('COMPLETED');
  }, 60_000);

  it('fails the run naming the failed variant after the others deployed', async () => {
    const { outcome, deployed } = await runWith('variants-one-fails', 'pyfunc');
    expect(outcome).toBeInstanceOf(WorkflowFailedError);
    const cause = (outcome as WorkflowFailedError).cause as ApplicationFailure;
    expect(cause.type).toBe('VariantFailed');
    expect(cause.message).toMatch(/^1 of 3 variants failed: custom: /);
    expect(deployed.sort()).toEqual(['hotel-reservations-model-basic-serving', 'hotel-reservations-model-fe-serving']);
  }, 60_000);
});
