import { log, patched, proxyActivities, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { PromotionApproval } from './approval';
import { deployAndVerify, rollOut, SERVING_ROLLOUT_PATCH } from './deploy';
import { bookingColumns } from './serving-config';
import { controlPlaneRetry, jobRetry } from './retry-policies';
import { MLOPS_STAGE } from './search-attributes';
import type { ApprovalOutcome, IngestResult, PipelineSpec, TableRef, VariantResult } from './types';

const { registerModelVersion, applyPromotion, updateFeatureTable, resolveAliasVersion } = proxyActivities<Activities>({
  startToCloseTimeout: '10m',
  retry: controlPlaneRetry,
});

const { trainModel, logTrainingRun, evaluatePromotion } = proxyActivities<Activities>({
  startToCloseTimeout: '2h',
  heartbeatTimeout: '1m',
  retry: jobRetry,
});

/** Marks runs that passed the promotion gate; older histories replay without it. */
const PROMOTION_GATE_PATCH = 'promotion-gate';

/** Sets the MlopsStage search attribute, shown in the Web UI's run list. */
export function stage(name: string): void {
  upsertSearchAttributes([{ key: MLOPS_STAGE, value: name }]);
}

/**
 * Trains one model variant on ingested tables and logs it to MLflow. Then it registers a model
 * version with an alias, lets the promotion gate (and an approval, when required) decide whether it
 * becomes champion, and deploys the champion to the variant's endpoint, which must pass a smoke test.
 */
export async function trainRegisterDeploy(
  spec: PipelineSpec,
  tables: IngestResult,
  approval: PromotionApproval,
): Promise<VariantResult> {
  // Runs recorded before the feature-lookup variant existed have no featureLookup in their spec.
  const lookup = spec.training.featureLookup;
  let featureTable: TableRef | undefined;
  if (lookup) {
    stage('features');
    const updated = await updateFeatureTable({
      table: { catalog: spec.catalog, schema: spec.schema, name: lookup.table },
      key: lookup.key,
      features: lookup.features,
      sources: [tables.train, tables.test],
    });
    featureTable = updated.table;
  }

  const extraRows = spec.training.trainingRows === 'all' ? { table: tables.extra, testFraction: spec.ingest.testFraction } : undefined;

  stage('train');
  const keyColumn = spec.ingest.renames[spec.ingest.idColumn] ?? spec.ingest.idColumn;
  const training = await trainModel({
    train: tables.train,
    test: tables.test,
    target: spec.ingest.target.name,
    keyColumn,
    training: spec.training,
    ...(featureTable ? { featureTable } : {}),
    ...(extraRows ? { extraRows } : {}),
  });

  stage('log');
  const run = await logTrainingRun({
    experiment: spec.tracking.experiment,
    artifactPath: spec.tracking.artifactPath,
    trained: training,
    train: tables.train,
    test: tables.test,
    datasetDigest: tables.report.sourceSha256,
    qualityReport: tables.report,
    tags: { 'mlops.git_sha': spec.tracking.gitSha, 'mlops.branch': spec.tracking.branch, 'mlops.env': spec.env },
    ...(lookup && featureTable ? { featureLookup: { spec: lookup, table: featureTable } } : {}),
  });

  stage('register');
  const modelVersion = await registerModelVersion({
    modelName: spec.registry.modelName,
    alias: spec.registry.alias,
    run,
    tags: { 'mlops.git_sha': spec.tracking.gitSha, 'mlops.workflow_id': workflowInfo().workflowId },
    evaluation: { test: tables.test, metrics: training.metrics, ...(extraRows ? { extra: extraRows.table } : {}) },
  });

  // A run started before the gate existed has no promotion settings, also when it reaches this point
  // on a newer worker.
  if (!patched(PROMOTION_GATE_PATCH) || spec.registry.promotion === undefined) {
    // A run started before the promotion gate existed deploys the version it registered.
    stage('deploy');
    const { deployment, smokeTest } = await deployAndVerify(spec.serving, modelVersion, {
      test: tables.test,
      inputs: bookingColumns(spec),
    });
    stage('done');
    return { variant: spec.variant, ...(featureTable ? { featureTable } : {}), training, run, modelVersion, deployment, smokeTest };
  }

  stage('promote');
  const { promotion: gate } = spec.registry;
  const decision = await evaluatePromotion({
    modelName: modelVersion.name,
    challengerVersion: modelVersion.version,
    challengerMetrics: training.metrics,
    test: tables.test,
    ...(extraRows ? { extraRows } : {}),
    target: spec.ingest.target.name,
    keyColumn,
    training: spec.training,
    promotion: gate,
  });
  // An already_champion retry moved the alias before, so nothing is asked again.
  let outcome: ApprovalOutcome = {
    status: decision.promote && decision.decision !== 'already_champion' ? 'not_required' : 'not_asked',
  };
  if (decision.promote && gate.approval.required && decision.decision !== 'already_champion') {
    stage('awaiting-approval');
    log.info('Waiting for approval of the promotion', { version: modelVersion.version, timeoutSeconds: gate.approval.timeoutSeconds });
    outcome = await approval.waitFor(modelVersion.version, gate.approval);
  }
  const promotion = await applyPromotion({
    modelName: modelVersion.name,
    version: modelVersion.version,
    championAlias: gate.championAlias,
    decision,
    approval: outcome,
  });

  if (!patched(SERVING_ROLLOUT_PATCH)) {
    // Runs started before rollouts deploy the champion with the original deployment steps.
    if (promotion.championVersionAfter === undefined) {
      // The first version was rejected, so there is no champion to serve.
      stage('done');
      log.info('No champion to deploy', { model: modelVersion.name, approval: outcome.status });
      return { variant: spec.variant, ...(featureTable ? { featureTable } : {}), training, run, modelVersion, promotion };
    }
    stage('deploy');
    const champion = { name: modelVersion.name, version: promotion.championVersionAfter };
    const { deployment, smokeTest } = await deployAndVerify(spec.serving, champion, {
      test: tables.test,
      inputs: bookingColumns(spec),
      output: spec.training.flavor === 'pyfunc' ? 'label_and_probability' : 'label',
    });
    stage('done');
    log.info('Variant finished', { variant: spec.variant, model: modelVersion.name, version: modelVersion.version, champion: champion.version, runId: run.runId });
    return { variant: spec.variant, ...(featureTable ? { featureTable } : {}), training, run, modelVersion, promotion, deployment, smokeTest };
  }

  // The endpoint follows a registry alias: the champion by default, or latest-model.
  const deployAlias = spec.serving.deployAlias ?? gate.championAlias;
  const { version: servedVersion } = await resolveAliasVersion({ modelName: modelVersion.name, alias: deployAlias });
  if (servedVersion === undefined) {
    // The first version was rejected, so the alias points at nothing to serve.
    stage('done');
    log.info('No version to deploy', { model: modelVersion.name, alias: deployAlias, approval: outcome.status });
    return { variant: spec.variant, ...(featureTable ? { featureTable } : {}), training, run, modelVersion, promotion };
  }
  stage('deploy');
  const { deployment, smokeTest } = await rollOut(spec.serving, { name: modelVersion.name, version: servedVersion }, {
    test: tables.test,
    inputs: bookingColumns(spec),
    output: spec.training.flavor === 'pyfunc' ? 'label_and_probability' : 'label',
  });

  stage('done');
  log.info('Variant finished', { variant: spec.variant, model: modelVersion.name, version: modelVersion.version, served: servedVersion, alias: deployAlias, runId: run.runId });
  return { variant: spec.variant, ...(featureTable ? { featureTable } : {}), training, run, modelVersion, promotion, deployment, smokeTest };
}
