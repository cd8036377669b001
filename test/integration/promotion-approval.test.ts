import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { applyPromotion, type ApplyPromotionInput } from '../../activities/promotion';
import type { MlflowRegistry } from '../../platform/registry/mlflow-registry';
import { approvalStateQuery, approveUpdate, rejectUpdate, trainAndDeploy, trainVariant } from '../../workflows';
import { variantWorkflowId } from '../../workflows/ids';
import type { PipelineResult, PipelineSpec, PromotionDecision } from '../../workflows/types';
import { testSpec } from '../helpers/fixtures';
import { createTestEnvironment, standInActivities } from '../helpers/workflow-env';

// The promotion gate's approval on a real Temporal dev server. The pipeline's data and model steps are
// stand-ins; applyPromotion is the real activity over a registry that records its calls.

let env: TestWorkflowEnvironment;

beforeAll(async () => {
  env = await createTestEnvironment();
}, 120_000);

afterAll(async () => {
  await env?.teardown();
});

const MODEL = 'mlops_dev.acikgozm.hotel_reservations_model_basic';

function specWithApproval(timeoutSeconds: number, onTimeout: 'approve' | 'reject' = 'reject'): PipelineSpec {
  const spec = testSpec('/tmp/approval-test.csv');
  return {
    ...spec,
    registry: { ...spec.registry, promotion: { ...spec.registry.promotion, approval: { required: true, timeoutSeconds, onTimeout } } },
  };
}

function decision(promote: boolean): PromotionDecision {
  return {
    decision: promote ? 'promote' : 'keep_champion',
    promote,
    metric: 'roc_auc',
    margin: 0,
    challengerVersion: '2',
    challengerScore: promote ? 0.92 : 0.85,
    championVersion: '1',
    championScore: 0.9,
    testTable: 'mlops_dev.acikgozm.test_set@1',
    championRescored: false,
  };
}

interface Recorded {
  aliases: { alias: string; version: string }[];
  deployed: string[];
}

/** Starts a worker with stand-in activities; `beforeTraining` lets a test act before the run trains. */
async function startWorker(taskQueue: string, promote: boolean, beforeTraining: Promise<void> = Promise.resolve()) {
  const recorded: Recorded = { aliases: [], deployed: [] };
  const registry = {
    setAlias: async (_name: string, alias: string, version: string) => void recorded.aliases.push({ alias, version }),
    setVersionTags: async () => undefined,
    // The champion the stand-in gate compared with is still champion when the promotion is applied.
    getVersionByAlias: async () => ({ name: MODEL, version: '1' }),
  } as unknown as MlflowRegistry;
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowsPath: require.resolve('../../workflows'),
    activities: standInActivities({
      trainModel: async () => {
        await beforeTraining;
        return { modelDir: '/tmp/m', evaluationDir: '/tmp/e', metrics: { roc_auc: 0.92 }, params: {}, trainRows: 1, testRows: 1, reused: false };
      },
      evaluatePromotion: async () => decision(promote),
      applyPromotion: (input: ApplyPromotionInput) => applyPromotion(registry, input),
      // The endpoint follows the champion alias: the version this run set, or champion version 1.
      resolveAliasVersion: async () => ({ version: recorded.aliases.at(-1)?.version ?? '1' }),
      deployServingEndpoint: async (target: { version: string }) => {
        recorded.deployed.push(target.version);
        return { endpoint: 'e', unchanged: false };
      },
    }),
  });
  return { worker, recorded };
}

/** Returns the basic variant's child run, which owns the approval. */
function variantRun(parent: WorkflowHandle<typeof trainAndDeploy>): WorkflowHandle<typeof trainVariant> {
  return env.client.workflow.getHandle(variantWorkflowId(parent.workflowId, 'basic'));
}

/** Polls the variant run's approval state until it waits for a decision; the run starts after ingestion. */
async function untilWaiting(handle: WorkflowHandle<typeof trainVariant>): Promise<void> {
  for (;;) {
    const phase = await handle.query(approvalStateQuery).then(
      (state) => state.phase,
      () => 'not started',
    );
    if (phase === 'waiting') return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('promotion approval', () => {
  it('waits for approve and then moves the champion', async () => {
    const { worker, recorded } = await startWorker('approval-approve', true);
    const result = await worker.runUntil(async () => {
      const handle = await env.client.workflow.start(trainAndDeploy, {
        taskQueue: 'approval-approve',
        workflowId: `approval-approve-${Date.now()}`,
        args: [specWithApproval(600)],
      });
      const variant = variantRun(handle);
      await untilWaiting(variant);
      expect((await variant.query(approvalStateQuery)).version).toBe('2');
      const state = await variant.executeUpdate(approveUpdate, { args: [{ by: 'reviewer', reason: 'metrics checked' }] });
      expect(state.outcome?.status).toBe('approved');
      return handle.result();
    });
    expect(result.variants[0].promotion?.approval).toMatchObject({ status: 'approved', by: 'reviewer', reason: 'metrics checked' });
    expect(result.variants[0].promotion?.promoted).toBe(true);
    expect(recorded.aliases).toEqual([{ alias: 'champion', version: '2' }]);
    expect(recorded.deployed).toEqual(['2']);
  }, 60_000);

  it('keeps the champion after reject', async () => {
    const { worker, recorded } = await startWorker('approval-reject', true);
    const result: PipelineResult = await worker.runUntil(async () => {
      const handle = await env.client.workflow.start(trainAndDeploy, {
        taskQueue: 'approval-reject',
        workflowId: `approval-reject-${Date.now()}`,
        args: [specWithApproval(600)],
      });
      await untilWaiting(variantRun(handle));
      await variantRun(handle).executeUpdate(rejectUpdate, { args: [{ by: 'reviewer' }] });
      return handle.result();
    });
    expect(result.variants[0].promotion?.approval.status).toBe('rejected');
    expect(result.variants[0].promotion?.promoted).toBe(false);
    expect(result.variants[0].promotion?.championVersionAfter).toBe('1');
    expect(recorded.aliases).toEqual([]);
    expect(recorded.deployed).toEqual(['1']);
  }, 60_000);

  it('applies the configured outcome on timeout', async () => {
    const { worker, recorded } = await startWorker('approval-timeout', true);
    const result = await worker.runUntil(
      env.client.workflow.execute(trainAndDeploy, {
        taskQueue: 'approval-timeout',
        workflowId: `approval-timeout-${Date.now()}`,
        args: [specWithApproval(2, 'reject')],
      }),
    );
    expect(result.variants[0].promotion?.approval.status).toBe('timed_out_rejected');
    expect(result.variants[0].promotion?.promoted).toBe(false);
    expect(recorded.aliases).toEqual([]);
  }, 60_000);

  it('rejects an approve sent before the run waits', async () => {
    let release!: () => void;
    const training = new Promise<void>((resolve) => (release = resolve));
    const { worker } = await startWorker('approval-early', false, training);
    await worker.runUntil(async () => {
      const handle = await env.client.workflow.start(trainAndDeploy, {
        taskQueue: 'approval-early',
        workflowId: `approval-early-${Date.now()}`,
        args: [specWithApproval(600)],
      });
      // The variant run exists while it trains, but it does not wait for approval yet.
      const variant = variantRun(handle);
      while (!(await variant.query(approvalStateQuery).then(() => true, () => false))) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const early = await variant.executeUpdate(approveUpdate, { args: [{}] }).catch((error: Error) => error);
      expect(early).toBeInstanceOf(WorkflowUpdateFailedError);
      expect(String((early as WorkflowUpdateFailedError).cause?.message)).toMatch(/not waiting for an approval/);
      release();
      const result = await handle.result();
      // The gate kept the champion, so no approval was asked for.
      expect(result.variants[0].promotion?.approval.status).toBe('not_asked');
    });
  }, 60_000);
});
