import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import type { Client } from '@temporalio/client';
import type { Worker } from '@temporalio/worker';
import { writeSyntheticBookings } from '../activities/synthetic';
import { createLogger } from '../common/logger';
import { logsDir, stackSettings, type StackSettings } from '../config/stack';
import { startStack, stopServicesStartedHere, type StackHandle } from '../stack/launcher';
import { installTemporalLogging } from '../worker/logging';
import { createWorker } from '../worker/worker';
import { MLOPS_STAGE } from '../workflows/search-attributes';
import { variantWorkflowId } from '../workflows/ids';
import type { PipelineResult, PipelineSpec, PromotionOutcome, VariantResult } from '../workflows/types';
import { EndpointPoller, formatPollerReport } from './endpoint-poller';
import { connectClient, DEFAULT_DATA_FILE, pipelineSpec, startPipeline, workflowUiUrl } from './pipeline';
import { activityTimings, formatTimings } from './stage-times';
import { formatQualityReport } from './quality-report';

const SYNTHETIC_ROWS = 20_000;

interface DemoOptions {
  data?: string;
  env?: string;
  featureSet?: string;
  variant?: string;
  trainingRows?: string;
  exit?: boolean;
  /** False with --no-swap. */
  swap?: boolean;
}

/** Feature set of the demo's second run. */
const SWAP_FEATURE_SET = 'extended';

function resolveData(options: DemoOptions, settings: StackSettings): string {
  if (options.data) return path.resolve(options.data);
  if (fs.existsSync(DEFAULT_DATA_FILE)) return DEFAULT_DATA_FILE;
  const file = path.join(settings.stateDir, 'data', 'synthetic-bookings.csv');
  console.log(
    `No --data given and ${DEFAULT_DATA_FILE} is absent: using ${SYNTHETIC_ROWS} synthetic bookings (seed 42) in ${file}. ` +
      'The model trained on them gets the latest-model alias; the promotion gate decides whether it replaces the champion that the endpoint serves.',
  );
  return writeSyntheticBookings(file, SYNTHETIC_ROWS, 42);
}

/** Describes the promotion gate's decision in one line. */
export function formatPromotion(promotion: PromotionOutcome): string {
  const score = (value: number | undefined): string => (value === undefined ? 'n/a' : value.toFixed(4));
  const versus =
    promotion.championVersion === undefined || promotion.decision === 'already_champion'
      ? 'no earlier champion'
      : `champion version ${promotion.championVersion} ${score(promotion.championScore)}` +
        (promotion.championRescored ? ' (scored again on this test table)' : '');
  const result = promotion.promoted
    ? `version ${promotion.challengerVersion} is now ${promotion.championAlias}`
    : `${promotion.championAlias} stays version ${promotion.championVersionAfter ?? 'unset'}`;
  return (
    `${promotion.decision}: ${promotion.metric} ${score(promotion.challengerScore)} against ${versus}, ` +
    `margin ${promotion.margin}, approval ${promotion.approval.status}; ${result}`
  );
}

/** Says what the endpoint served before and after the run. */
export function formatRollout(result: VariantResult): string {
  const deployment = result.deployment;
  const rollout = deployment?.rollout;
  if (!deployment || !rollout) return deployment?.unchanged ? 'unchanged' : 'direct';
  if (deployment.unchanged) return `unchanged: ${rollout.servedEntity} already served all traffic`;
  if (rollout.previousVersions.length === 0) return `${rollout.strategy}: created the endpoint with ${rollout.servedEntity}`;
  const canary = rollout.canary
    ? ` after a canary (${rollout.canary.requests} requests, ${rollout.canary.errors} failed, p95 at most ${rollout.canary.p95LatencyMs ?? 'n/a'} ms)`
    : '';
  return `${rollout.strategy}: ${rollout.servedEntity} replaced version ${rollout.previousVersions.join(' and ')}${canary}`;
}

/** Links and stage times of one variant's child workflow, shown with its result. */
interface VariantDetails {
  workflowLink: string;
  stageTimes: string;
}

function formatVariant(result: VariantResult, details: VariantDetails): string {
  const { training, run, modelVersion, promotion, smokeTest } = result;
  const metric = (name: string): string => (training.metrics[name] ?? NaN).toFixed(4);
  const endpoint = smokeTest
    ? `  Endpoint      ${smokeTest.url}
  Request       curl -s -X POST ${smokeTest.url} -H 'Content-Type: application/json' -d '${JSON.stringify(smokeTest.request)}'
  Smoke test    ${smokeTest.predictions.length} predictions per request from ${smokeTest.servedModel ?? 'the endpoint'}, median ${(smokeTest.medianLatencyMs ?? smokeTest.latencyMs).toFixed(1)} ms
  Rollout       ${formatRollout(result)}`
    : '  Endpoint      not deployed: no version is champion';
  const features = result.featureTable
    ? `\n  Features      ${result.featureTable.catalog}.${result.featureTable.schema}.${result.featureTable.name} v${result.featureTable.version} (looked up by booking_id)`
    : '';
  return `
Variant ${result.variant ?? 'basic'}${features}
  Metrics       ${training.params.feature_set ?? 'course'} features: accuracy ${metric('accuracy')}, roc_auc ${metric('roc_auc')}, f1 ${metric('f1')}
  Model version ${modelVersion.name} version ${modelVersion.version} (alias ${modelVersion.alias})
  Promotion     ${promotion ? formatPromotion(promotion) : 'none: the run started before the promotion gate existed'}
${endpoint}
  Temporal UI   ${details.workflowLink}
  MLflow run    ${run.runUrl}
  Stage times   ${details.stageTimes}`;
}

function printSummary(result: PipelineResult, links: { workflow: string }, variants: VariantDetails[]): void {
  const { tables } = result;
  console.log(`
Pipeline finished.
  Tables        train_set v${tables.train.version} (${tables.report.rowsTrain} rows), test_set v${tables.test.version} (${tables.report.rowsTest} rows), extra_set v${tables.extra.version} (${tables.report.rowsExtra} rows)${tables.reused ? ', reused: same file as before' : ''}
  Changes       ${tables.reused ? 'none: these versions were written by an earlier run' : `${(['train', 'test', 'extra'] as const).map((t) => `${t} +${tables.changes[t].inserted} ~${tables.changes[t].updated} -${tables.changes[t].deleted}`).join(', ')} (inserted ~updated -deleted)`}
  Data quality
${formatQualityReport(tables.report, '    ')}
  Temporal UI   ${links.workflow}
${result.variants.map((variant, index) => formatVariant(variant, variants[index])).join('\n')}
`);
}

interface PipelineRun {
  result: PipelineResult;
  workflowLink: string;
  variants: VariantDetails[];
}

/** Starts one pipeline run, prints each stage change of it and its variant runs, and returns the result. */
async function runPipeline(client: Client, settings: StackSettings, spec: PipelineSpec): Promise<PipelineRun> {
  const handle = await startPipeline(client, settings, spec);
  const { runId } = await handle.describe();
  const workflowLink = workflowUiUrl(settings, handle.workflowId, runId);
  console.log(`Started workflow ${handle.workflowId} on ${spec.sourcePath} (${spec.training.featureSet} features)\n  ${workflowLink}`);

  const workflowStarted = Date.now();
  const lastStages = new Map<string, string>();
  const runs = [
    { label: 'pipeline', handle },
    ...(spec.variants ?? []).map((variant) => ({
      label: variant.name,
      handle: client.workflow.getHandle(variantWorkflowId(handle.workflowId, variant.name)),
    })),
  ];
  const showStage = async (): Promise<void> => {
    for (const { label, handle: watched } of runs) {
      try {
        const stage = (await watched.describe()).typedSearchAttributes.get(MLOPS_STAGE);
        if (stage && stage !== lastStages.get(label)) {
          console.log(`  [${((Date.now() - workflowStarted) / 1000).toFixed(1)} s] ${label}: ${stage}`);
          lastStages.set(label, stage);
        }
      } catch {
        // Progress display only: a variant's run does not exist before ingestion ends.
      }
    }
  };
  await showStage();
  const stageTimer = setInterval(showStage, 500);
  let result: PipelineResult;
  try {
    result = await handle.result();
  } finally {
    clearInterval(stageTimer);
  }
  const variants = await Promise.all(
    result.variants.map(async (variant) => {
      const child = client.workflow.getHandle(variantWorkflowId(handle.workflowId, variant.variant ?? 'basic'));
      const { runId: childRunId } = await child.describe();
      return {
        workflowLink: workflowUiUrl(settings, child.workflowId, childRunId),
        stageTimes: formatTimings(activityTimings(await child.fetchHistory())),
      };
    }),
  );
  return { result, workflowLink, variants };
}

/**
 * The demo's second run: the same data with the richer feature set, whose model should beat the
 * champion and replace it on the endpoint while a client keeps querying it. Skipped when the first
 * run already used that feature set, deployed nothing, or --no-swap is given.
 */
function swapPlan(
  options: DemoOptions,
  spec: PipelineSpec,
  result: PipelineResult,
): { featureSet: string; endpoint: string; url: string; body: Record<string, unknown>; reason: string } | undefined {
  if (options.swap === false || spec.training.featureSet === SWAP_FEATURE_SET) return undefined;
  const deployed = result.variants.find((variant) => variant.smokeTest);
  if (!deployed?.smokeTest) return undefined;
  return {
    featureSet: SWAP_FEATURE_SET,
    endpoint: deployed.smokeTest.endpoint,
    url: deployed.smokeTest.url,
    body: deployed.smokeTest.request,
    reason: `the same data with the ${SWAP_FEATURE_SET} feature set, whose model should beat the champion and replace it`,
  };
}

async function run(options: DemoOptions): Promise<void> {
  const settings = stackSettings();
  const started = Date.now();
  let stack: StackHandle | undefined;
  let worker: Worker | undefined;
  let workerDone: Promise<void> | undefined;

  const shutdown = async (): Promise<void> => {
    if (worker && worker.getState() === 'RUNNING') worker.shutdown();
    await workerDone?.catch(() => undefined);
    await (stack ? stack.stop() : stopServicesStartedHere(settings));
  };
  // tsx relays the terminal's SIGINT to this process, so one Ctrl-C can arrive twice. Only the first
  // starts the shutdown, and later ones must not kill the process before the services are stopped.
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    const name = signal === 'SIGINT' ? 'Ctrl-C' : signal;
    console.log(`\n${name}: stopping the worker and the services this demo started...`);
    shutdown().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    const dataPath = resolveData(options, settings);
    const request = {
      dataPath,
      env: options.env,
      featureSet: options.featureSet,
      variant: options.variant,
      trainingRows: options.trainingRows,
    };
    const spec = pipelineSpec(request);
    stack = await startStack(settings);

    const workerLog = path.join(logsDir(settings), 'worker.log');
    installTemporalLogging(createLogger('worker', { file: workerLog }));
    const created = await createWorker(settings, { identity: `demo-${process.pid}` });
    worker = created.worker;
    workerDone = created.run();
    console.log(`Worker running (log ${workerLog}).`);

    const client = await connectClient(settings);
    const first = await runPipeline(client, settings, spec);
    printSummary(first.result, { workflow: first.workflowLink }, first.variants);

    const swap = swapPlan(options, spec, first.result);
    if (swap) {
      console.log(`\nSecond run: ${swap.reason}. A client queries ${swap.endpoint} every 50 ms during the run.`);
      const poller = new EndpointPoller(swap.url, swap.body);
      poller.start();
      let second: PipelineRun;
      try {
        second = await runPipeline(client, settings, pipelineSpec({ ...request, featureSet: swap.featureSet }));
      } finally {
        const report = await poller.stop();
        console.log(`  Polling client ${formatPollerReport(report)}`);
      }
      printSummary(second.result, { workflow: second.workflowLink }, second.variants);
    }
    console.log(`Total time: ${((Date.now() - started) / 1000).toFixed(1)} s`);

    if (options.exit) {
      console.log('--exit: stopping the stack, so the endpoints and links above stop responding. Run without --exit to keep them.');
      await shutdown();
      return;
    }
    console.log('The stack keeps running for inspection. Press Ctrl-C to stop it.');
    await new Promise(() => undefined);
  } catch (error) {
    await shutdown();
    throw error;
  }
}

const program = new Command('demo')
  .description('Run the end-to-end pipeline on the embedded local stack')
  .option('--data <path>', 'bookings CSV to ingest (default: data/hotel_reservations.csv, else synthetic data)')
  .option('--env <name>', 'environment from config/project.yml (default: MLOPS_ENV or dev)')
  .option('--feature-set <name>', 'feature set from config/project.yml (default: model.feature_set)')
  .option('--training-rows <rows>', 'segment (Online rows, the default) or all (every segment)')
  .option('--variant <names>', 'variants to train: basic, custom, feature_lookup, a comma-separated list or all (default: model.variants)')
  .option('--exit', 'stop the stack when the pipeline has finished')
  .option('--no-swap', 'skip the second run that replaces the served model with a better one')
  .action(async (options: DemoOptions) => run(options));

program.parseAsync().then(
  () => process.exit(0),
  (error: Error) => {
    console.error(`demo failed: ${error.message}`);
    // A workflow failure wraps the activity failure, which wraps the classified error with the fix.
    for (let cause = error.cause; cause instanceof Error; cause = cause.cause) {
      console.error(`  caused by ${cause.name}: ${cause.message}`);
    }
    process.exit(1);
  },
);
