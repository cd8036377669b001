import {
  ApplicationFailure,
  executeChild,
  ParentClosePolicy,
  patched,
  proxyActivities,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { PromotionApproval } from './approval';
import { variantWorkflowId } from './ids';
import { stage, trainRegisterDeploy } from './lifecycle';
import { controlPlaneRetry } from './retry-policies';
import { MLOPS_ENV, MLOPS_MODEL } from './search-attributes';
import type { IngestResult, PipelineResult, PipelineSpec, VariantResult, VariantSpec } from './types';

const { generateSyntheticBookings, ingestBookings } = proxyActivities<Activities>({
  startToCloseTimeout: '10m',
  retry: controlPlaneRetry,
});

/** Marks runs that train each variant in a child workflow; older histories replay the inline path. */
const VARIANT_CHILDREN_PATCH = 'variant-children';

/** Input of one variant's child workflow: the run's spec, the variant, and the ingested tables. */
export interface VariantInput {
  spec: PipelineSpec;
  variant: VariantSpec;
  tables: IngestResult;
}

/** Returns the spec as seen by one variant: its experiment, model, endpoint and flavor. */
export function specForVariant(spec: PipelineSpec, variant: VariantSpec): PipelineSpec {
  return {
    ...spec,
    variant: variant.name,
    tracking: { ...spec.tracking, experiment: variant.experiment, artifactPath: variant.artifactPath },
    registry: { ...spec.registry, modelName: variant.modelName },
    serving: { ...spec.serving, endpoint: variant.endpoint },
    training: { ...spec.training, flavor: variant.flavor, featureLookup: variant.featureLookup },
  };
}

/**
 * Trains, registers, promotes and deploys one model variant, as a child workflow of trainAndDeploy. An
 * approval of its promotion goes to this workflow (`<parent id>-<variant>`).
 */
export async function trainVariant(input: VariantInput): Promise<VariantResult> {
  const approval = new PromotionApproval();
  const spec = specForVariant(input.spec, input.variant);
  upsertSearchAttributes([
    { key: MLOPS_ENV, value: spec.env },
    { key: MLOPS_MODEL, value: spec.registry.modelName },
  ]);
  return trainRegisterDeploy(spec, input.tables, approval);
}

/**
 * Runs the model lifecycle: ingests the bookings file into new table versions, then trains, registers,
 * promotes and deploys each configured variant in its own child workflow, in parallel.
 */
export async function trainAndDeploy(spec: PipelineSpec): Promise<PipelineResult> {
  // Registered first, so an approval sent to a run started before the child workflows existed works.
  const approval = new PromotionApproval();
  upsertSearchAttributes([
    { key: MLOPS_ENV, value: spec.env },
    { key: MLOPS_MODEL, value: spec.registry.modelName },
  ]);

  stage('ingest');
  const sourcePath = spec.syntheticBatch ? await generateSyntheticBookings(spec.syntheticBatch) : spec.sourcePath;
  const tables = await ingestBookings({
    sourcePath,
    catalog: spec.catalog,
    schema: spec.schema,
    spec: spec.ingest,
  });

  // A run started before variants ran as child workflows trains its one variant inline, also when it
  // reaches this point on a newer worker: its spec then has no variants list.
  if (!patched(VARIANT_CHILDREN_PATCH) || spec.variants === undefined) {
    return { tables, variants: [await trainRegisterDeploy(spec, tables, approval)] };
  }
  if (spec.variants.length === 0) {
    throw ApplicationFailure.create({
      type: 'InvalidInput',
      nonRetryable: true,
      message: 'The run spec lists no variants to train. Pass --variant basic, custom, feature_lookup or all.',
    });
  }

  stage('variants');
  // Every variant runs to its end even when another fails, so one failure does not cut a deployment short.
  const settled = await Promise.allSettled(
    spec.variants.map((variant) =>
      executeChild(trainVariant, {
        workflowId: variantWorkflowId(workflowInfo().workflowId, variant.name),
        args: [{ spec, variant, tables }],
        // Cancelling or terminating the pipeline run stops its variants too.
        parentClosePolicy: ParentClosePolicy.TERMINATE,
      }),
    ),
  );
  const failed = settled.flatMap((outcome, index) =>
    outcome.status === 'rejected' ? [`${spec.variants![index].name}: ${(outcome.reason as Error).message}`] : [],
  );
  const results = settled.flatMap((outcome) => (outcome.status === 'fulfilled' ? [outcome.value] : []));
  if (failed.length > 0) {
    stage('failed');
    throw ApplicationFailure.create({
      type: 'VariantFailed',
      nonRetryable: true,
      message: `${failed.length} of ${spec.variants.length} variants failed: ${failed.join('; ')}`,
      details: [{ tables, variants: results }],
    });
  }
  stage('done');
  return { tables, variants: results };
}
