import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import type { Worker } from '@temporalio/worker';
import { writeSyntheticBookings } from '../activities/synthetic';
import { createLogger } from '../common/logger';
import { logsDir, stackSettings, type StackSettings } from '../config/stack';
import { startStack, stopServicesStartedHere, type StackHandle } from '../stack/launcher';
import { installTemporalLogging } from '../worker/logging';
import { createWorker } from '../worker/worker';
import { MLOPS_STAGE } from '../workflows/search-attributes';
import { variantWorkflowId } from '../workflows/ids';
import type { PipelineResult, PromotionOutcome, VariantResult } from '../workflows/types';
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
}

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
  Prediction    ${JSON.stringify({ predictions: smokeTest.predictions })} in ${smokeTest.latencyMs.toFixed(1)} ms from ${smokeTest.servedModel ?? 'the endpoint'}`
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
  process.on('SIGINT', () => {
    if (stopping) return;
    stopping = true;
    console.log('\nCtrl-C: stopping the worker and the services this demo started...');
    shutdown().finally(() => process.exit(130));
  });

  try {
    const dataPath = resolveData(options, settings);
    const spec = pipelineSpec({
      dataPath,
      env: options.env,
      featureSet: options.featureSet,
      variant: options.variant,
      trainingRows: options.trainingRows,
    });
    stack = await startStack(settings);

    const workerLog = path.join(logsDir(settings), 'worker.log');
    installTemporalLogging(createLogger('worker', { file: workerLog }));
    const created = await createWorker(settings, { identity: `demo-${process.pid}` });
    worker = created.worker;
    workerDone = created.run();
    console.log(`Worker running (log ${workerLog}).`);

    const client = await connectClient(settings);
    const handle = await startPipeline(client, settings, spec);
    const { runId } = await handle.describe();
    const workflowLink = workflowUiUrl(settings, handle.workflowId, runId);
    console.log(`Started workflow ${handle.workflowId} on ${spec.sourcePath}\n  ${workflowLink}`);

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
    const variantDetails = await Promise.all(
      result.variants.map(async (variant) => {
        const child = client.workflow.getHandle(variantWorkflowId(handle.workflowId, variant.variant ?? 'basic'));
        const { runId: childRunId } = await child.describe();
        return {
          workflowLink: workflowUiUrl(settings, child.workflowId, childRunId),
          stageTimes: formatTimings(activityTimings(await child.fetchHistory())),
        };
      }),
    );
    printSummary(result, { workflow: workflowLink }, variantDetails);
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
