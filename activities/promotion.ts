import { ApplicationFailure } from '@temporalio/common';
import { log } from '@temporalio/activity';
import { classifyHttpError } from '../platform/http-errors';
import { LocalCatalog } from '../platform/catalog/local';
import { qualifiedName } from '../platform/catalog/port';
import type { MlflowRegistry, ModelVersion } from '../platform/registry/mlflow-registry';
import type {
  ApprovalOutcome,
  PromotionDecision,
  PromotionMetric,
  PromotionOutcome,
  PromotionSpec,
  TableRef,
  TrainingSpec,
} from '../workflows/types';
import { runPythonJob } from './python-job';
import { jobWorkDir } from './training';

/** Version tag naming the test table version a version's metric tags were computed on. */
export const TEST_TABLE_TAG = 'mlops.test_table';
/** Prefix of the version tags containing test metrics, as in `mlops.metric.roc_auc`. */
export const METRIC_TAG_PREFIX = 'mlops.metric.';
const PROMOTION_TAG_PREFIX = 'mlops.promotion.';

/** Metrics where a smaller value is better. */
const LOWER_IS_BETTER: ReadonlySet<PromotionMetric> = new Set(['log_loss']);

/**
 * Returns the tag value of the rows a model was tested on, such as `mlops_dev.acikgozm.test_set@3`, or
 * `...test_set@3+mlops_dev.acikgozm.extra_set@2` when the other segments' test rows joined them.
 */
export function testTableTag(test: TableRef, extra?: TableRef): string {
  const base = `${qualifiedName(test)}@${test.version}`;
  return extra ? `${base}+${qualifiedName(extra)}@${extra.version}` : base;
}

/** Returns the version tags that record a version's test metrics and the rows they were computed on. */
export function evaluationTags(test: TableRef, metrics: Record<string, number>, extra?: TableRef): Record<string, string> {
  const tags: Record<string, string> = { [TEST_TABLE_TAG]: testTableTag(test, extra) };
  for (const [name, value] of Object.entries(metrics)) tags[`${METRIC_TAG_PREFIX}${name}`] = String(value);
  return tags;
}

/**
 * Returns true when the challenger beats the champion by more than `margin`. The original project
 * compared accuracy rounded to 2 decimals, which could hide a small real gain or let a small loss win.
 * This compares the unrounded scores.
 */
export function challengerWins(metric: PromotionMetric, margin: number, challenger: number, champion: number): boolean {
  const gain = LOWER_IS_BETTER.has(metric) ? champion - challenger : challenger - champion;
  return gain > margin;
}

export interface PromotionInput {
  modelName: string;
  /** The version just registered. */
  challengerVersion: string;
  /** Test metrics of the challenger on `test`. */
  challengerMetrics: Record<string, number>;
  test: TableRef;
  /** With training on all rows: the other segments' table whose test part joins the test table. */
  extraRows?: { table: TableRef; testFraction: number };
  target: string;
  keyColumn: string;
  training: Pick<TrainingSpec, 'numericInputs' | 'categoricalInputs'>;
  promotion: PromotionSpec;
}

function tagsOf(version: ModelVersion): Record<string, string> {
  return Object.fromEntries((version.tags ?? []).map((tag) => [tag.key, tag.value]));
}

/**
 * Compares the challenger with the current champion on the same test table version and records the
 * decision as tags of the challenger version. A champion evaluated on another test table version is
 * scored again on this one by the Python `score` job. Moves no alias: `applyPromotion` does that once
 * an approval, when required, has been given.
 *
 * NOTE: only the metric is compared. A challenger whose signature needs other request fields (another
 * feature set) can still win, and the endpoint's clients must then send those fields.
 */
export async function evaluatePromotion(
  registry: MlflowRegistry,
  catalogRoot: string,
  jobsRoot: string,
  trackingUri: string,
  input: PromotionInput,
): Promise<PromotionDecision> {
  const { metric, margin, championAlias } = input.promotion;
  const challengerScore = input.challengerMetrics[metric];
  if (challengerScore === undefined) {
    throw ApplicationFailure.create({
      type: 'InvalidInput',
      nonRetryable: true,
      message: `The training metrics have no ${metric}; they have ${Object.keys(input.challengerMetrics).join(', ')}. Set registry.promotion.metric to one of them.`,
    });
  }
  const base = { metric, margin, challengerVersion: input.challengerVersion, challengerScore, testTable: testTableTag(input.test, input.extraRows?.table) };
  try {
    const champion = await registry.getVersionByAlias(input.modelName, championAlias);
    let decision: PromotionDecision;
    if (!champion) {
      decision = { ...base, decision: 'first_champion', promote: true, championRescored: false };
    } else if (champion.version === input.challengerVersion) {
      // A retried or replayed run whose version already took the alias.
      decision = { ...base, decision: 'already_champion', promote: true, championVersion: champion.version, championScore: challengerScore, championRescored: false };
    } else {
      const { score, rescored } = await championScore(champion, catalogRoot, jobsRoot, trackingUri, input);
      const promote = challengerWins(metric, margin, challengerScore, score);
      decision = {
        ...base,
        decision: promote ? 'promote' : 'keep_champion',
        promote,
        championVersion: champion.version,
        championScore: score,
        championRescored: rescored,
      };
    }
    await registry.setVersionTags(input.modelName, input.challengerVersion, {
      [`${PROMOTION_TAG_PREFIX}decision`]: decision.decision,
      [`${PROMOTION_TAG_PREFIX}metric`]: metric,
      [`${PROMOTION_TAG_PREFIX}margin`]: String(margin),
      [`${PROMOTION_TAG_PREFIX}test_table`]: decision.testTable,
      [`${PROMOTION_TAG_PREFIX}challenger_score`]: String(challengerScore),
      ...(decision.championVersion === undefined
        ? {}
        : {
            [`${PROMOTION_TAG_PREFIX}champion_version`]: decision.championVersion,
            [`${PROMOTION_TAG_PREFIX}champion_score`]: String(decision.championScore),
          }),
    });
    log.info('Promotion decided', { model: input.modelName, ...decision });
    return decision;
  } catch (error) {
    if (error instanceof ApplicationFailure) throw error;
    throw classifyHttpError(error, `Comparing ${input.modelName} version ${input.challengerVersion} with its champion`);
  }
}

/** Returns the champion's score on the input's test table, from its tags or by scoring it again. */
async function championScore(
  champion: ModelVersion,
  catalogRoot: string,
  jobsRoot: string,
  trackingUri: string,
  input: PromotionInput,
): Promise<{ score: number; rescored: boolean }> {
  const tags = tagsOf(champion);
  const recorded = tags[`${METRIC_TAG_PREFIX}${input.promotion.metric}`];
  if (tags[TEST_TABLE_TAG] === testTableTag(input.test, input.extraRows?.table) && recorded !== undefined && Number.isFinite(Number(recorded))) {
    return { score: Number(recorded), rescored: false };
  }
  log.info('Scoring the champion on the test table of this run', {
    model: input.modelName,
    champion: champion.version,
    test: testTableTag(input.test, input.extraRows?.table),
    championTestTable: tags[TEST_TABLE_TAG] ?? 'unknown',
  });
  const result = await runPythonJob<{ metrics: Record<string, number> }>(
    'score',
    {
      tracking_uri: trackingUri,
      model_uri: `models:/${input.modelName}/${champion.version}`,
      test_path: new LocalCatalog(catalogRoot).snapshotPath(input.test),
      target: input.target,
      numeric_inputs: input.training.numericInputs,
      categorical_inputs: input.training.categoricalInputs,
      key_column: input.keyColumn,
      ...(input.extraRows
        ? {
            extra_rows: {
              path: new LocalCatalog(catalogRoot).snapshotPath(input.extraRows.table),
              key: input.keyColumn,
              test_fraction: input.extraRows.testFraction,
            },
          }
        : {}),
    },
    jobWorkDir(jobsRoot, `score-champion-v${champion.version}`),
  );
  return { score: result.metrics[input.promotion.metric], rescored: true };
}

export interface ApplyPromotionInput {
  modelName: string;
  version: string;
  championAlias: string;
  decision: PromotionDecision;
  approval: ApprovalOutcome;
}

/**
 * Points the champion alias at the version when the decision and the approval allow it, and records
 * the outcome as version tags. Returns the version that is champion afterwards (none only when the
 * first version was rejected).
 */
export async function applyPromotion(registry: MlflowRegistry, input: ApplyPromotionInput): Promise<PromotionOutcome> {
  const allowed = input.decision.promote && input.approval.status !== 'rejected' && input.approval.status !== 'timed_out_rejected';
  try {
    // The decision may be hours old when an approval was awaited. If another run moved the champion
    // meanwhile, this version was never compared with the new one, so it does not take the alias.
    const current = allowed ? (await registry.getVersionByAlias(input.modelName, input.championAlias))?.version : undefined;
    const moved = allowed && current !== undefined && current !== input.decision.championVersion && current !== input.version;
    const promoted = allowed && !moved;
    if (moved) {
      log.warn('Champion changed while the promotion was pending; keeping it', {
        model: input.modelName,
        version: input.version,
        comparedWith: input.decision.championVersion,
        champion: current,
      });
    }
    if (promoted) {
      await registry.setAlias(input.modelName, input.championAlias, input.version);
      log.info('Champion alias moved', { model: input.modelName, alias: input.championAlias, version: input.version });
    }
    let outcome = 'not_promoted';
    if (promoted) outcome = 'champion';
    else if (moved) outcome = 'not_promoted_champion_changed';
    let championAfter = input.decision.championVersion;
    if (promoted) championAfter = input.version;
    else if (moved) championAfter = current;
    await registry.setVersionTags(input.modelName, input.version, {
      [`${PROMOTION_TAG_PREFIX}approval`]: input.approval.status,
      [`${PROMOTION_TAG_PREFIX}outcome`]: outcome,
      ...(input.approval.by ? { [`${PROMOTION_TAG_PREFIX}decided_by`]: input.approval.by } : {}),
      ...(input.approval.reason ? { [`${PROMOTION_TAG_PREFIX}reason`]: input.approval.reason } : {}),
    });
    return {
      ...input.decision,
      approval: input.approval,
      promoted,
      championAlias: input.championAlias,
      championVersionAfter: championAfter,
    };
  } catch (error) {
    throw classifyHttpError(error, `Promoting ${input.modelName} version ${input.version}`);
  }
}
