// Measures the training stage (trainModel plus logTrainingRun) of each model variant in the pipeline
// against bench/bare_train_log.py, which fits and logs the same model in one Python process, in the
// same run and against the same MLflow server.
//
// Usage: HOTEL_DATA_CSV=/path/to/hotel_reservations.csv npx tsx bench/training-stages.ts [--runs 3]
//
// It starts its own stack on ports 27233, 28233, 25000 and 28080 with state in /tmp/bench-training-*.
// It runs one pipeline per variant and run, so variants do not compete for the 2 cores. Each stage's
// time comes from the workflow history, from scheduling the activity to its completion, so Python
// start-up, imports, job files and retries count. The baseline's time is its process's wall time.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { connectClient, startPipeline } from '../client/pipeline';
import { activityTimings } from '../client/stage-times';
import { createLogger } from '../common/logger';
import { PYTHON_BIN, REPO_ROOT } from '../common/paths';
import { buildPipelineSpec, loadProjectConfig } from '../config/load';
import { catalogDir, logsDir, mlflowUrl, stackSettings } from '../config/stack';
import { LocalCatalog } from '../platform/catalog/local';
import { startStack } from '../stack/launcher';
import { installTemporalLogging } from '../worker/logging';
import { createWorker } from '../worker/worker';
import { variantWorkflowId } from '../workflows/ids';
import type { VariantName } from '../workflows/types';

const VARIANTS: VariantName[] = ['basic', 'custom'];

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' } } });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`Invalid --runs ${values.runs}: pass a whole number of 1 or more.`);
  const data = process.env.HOTEL_DATA_CSV;
  if (!data || !fs.existsSync(data)) throw new Error('Set HOTEL_DATA_CSV to the bookings CSV to train on.');

  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-training-'));
  const settings = stackSettings({
    MLOPS_STATE_DIR: stateDir,
    MLOPS_TEMPORAL_PORT: '27233',
    MLOPS_TEMPORAL_UI_PORT: '28233',
    MLOPS_MLFLOW_PORT: '25000',
    MLOPS_SERVING_PORT: '28080',
    MLOPS_TASK_QUEUE: 'bench-training',
  });
  const stack = await startStack(settings);
  installTemporalLogging(createLogger('worker', { file: path.join(logsDir(settings), 'worker.log') }));
  const { worker, run } = await createWorker(settings, { identity: 'bench-training' });
  const workerDone = run();
  const client = await connectClient(settings);
  const config = loadProjectConfig();
  const ours = new Map<VariantName, number[]>(VARIANTS.map((v) => [v, []]));
  const bare = new Map<VariantName, number[]>(VARIANTS.map((v) => [v, []]));
  const aucs = new Map<string, number>();
  try {
    for (let index = 1; index <= runs; index++) {
      for (const variant of VARIANTS) {
        const spec = buildPipelineSpec(config, {
          env: 'dev',
          sourcePath: data,
          gitSha: 'bench',
          branch: 'bench',
          variants: [variant],
          serving: { readyTimeoutSeconds: 600, pollIntervalSeconds: 1 },
        });
        const workflowId = `bench-training-${variant}-${index}-${Date.now()}`;
        const result = await (await startPipeline(client, settings, spec, workflowId)).result();
        const history = await client.workflow.getHandle(variantWorkflowId(workflowId, variant)).fetchHistory();
        const stages = activityTimings(history).filter((t) => t.activityType === 'trainModel' || t.activityType === 'logTrainingRun');
        const seconds = stages.reduce((sum, t) => sum + t.seconds, 0);
        ours.get(variant)!.push(seconds);
        aucs.set(`ours ${variant}`, result.variants[0].training.metrics.roc_auc);
        console.log(`run ${index}, ours, ${variant}: ${stages.map((t) => `${t.activityType} ${t.seconds.toFixed(1)} s`).join(', ')}`);

        const catalog = new LocalCatalog(catalogDir(settings));
        const settingsJson = JSON.stringify({
          numeric_inputs: spec.training.numericInputs,
          categorical_inputs: spec.training.categoricalInputs,
          parameters: spec.training.parameters,
          seed: spec.training.seed,
        });
        const started = Date.now();
        const baseline = spawnSync(
          PYTHON_BIN,
          [
            path.join(REPO_ROOT, 'bench', 'bare_train_log.py'),
            catalog.snapshotPath(result.tables.train),
            catalog.snapshotPath(result.tables.test),
            mlflowUrl(settings),
            variant,
            settingsJson,
          ],
          { encoding: 'utf8', cwd: path.join(REPO_ROOT, 'ml'), env: { ...process.env, MLFLOW_DISABLE_TELEMETRY: 'true' } },
        );
        const wall = (Date.now() - started) / 1000;
        if (baseline.status !== 0) throw new Error(`bare_train_log.py failed: ${baseline.stderr.slice(-2000)}`);
        const line = JSON.parse(baseline.stdout.trim().split('\n').pop()!) as { roc_auc: number };
        bare.get(variant)!.push(wall);
        aucs.set(`bare ${variant}`, line.roc_auc);
        console.log(`run ${index}, bare script, ${variant}: ${wall.toFixed(1)} s`);
      }
    }
  } finally {
    await client.connection.close();
    worker.shutdown();
    await workerDone;
    await stack.stop();
    fs.rmSync(stateDir, { recursive: true, force: true });
  }

  console.log(`\nMedian of ${runs} runs, in seconds.\n`);
  console.log('| variant | pipeline: trainModel + logTrainingRun | bare script, one process | ratio | ROC AUC (pipeline, bare) |');
  console.log('| --- | ---: | ---: | ---: | --- |');
  for (const variant of VARIANTS) {
    const a = median(ours.get(variant)!);
    const b = median(bare.get(variant)!);
    console.log(
      `| ${variant} | ${a.toFixed(1)} | ${b.toFixed(1)} | ${(a / b).toFixed(2)}× | ` +
        `${aucs.get(`ours ${variant}`)?.toFixed(4)}, ${aucs.get(`bare ${variant}`)?.toFixed(4)} |`,
    );
  }
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
