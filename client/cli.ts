import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { WorkflowNotFoundError, WorkflowUpdateFailedError, type Client } from '@temporalio/client';
import { Command } from 'commander';
import { writeSyntheticBookings } from '../activities/synthetic';
import { loadProjectConfig, resolveEnvironment, rolloutSpec } from '../config/load';
import { catalogDir, servingUrl, stackSettings } from '../config/stack';
import { ServingClient } from '../platform/serving/client';
import { deleteEndpoint, deployModelVersion } from '../workflows';
import type { DeployModelVersionInput } from '../workflows/deploy';
import { bookingColumns } from '../workflows/serving-config';
import { LocalCatalog } from '../platform/catalog/local';
import { approveUpdate, rejectUpdate } from '../workflows/approval';
import { variantWorkflowId } from '../workflows/ids';
import { MLOPS_STAGE } from '../workflows/search-attributes';
import { connectClient, pipelineSpec, startPipeline, workflowPollerCount, workflowUiUrl } from './pipeline';
import { formatQualityReport } from './quality-report';
import type { QualityReport } from '../workflows/types';

interface RunOptions {
  data?: string;
  synthetic?: string;
  seed?: string;
  env?: string;
  featureSet?: string;
  variant?: string;
  trainingRows?: string;
  workflowId?: string;
  wait?: boolean;
}

const program = new Command('pipeline').description('Start and inspect pipeline runs on a running stack and worker');

program
  .command('run')
  .description('Start the train-and-deploy workflow (needs `npm run stack:up` and `npm run worker`)')
  .option('--data <path>', 'bookings CSV on the worker host')
  .option('--synthetic <rows>', 'ingest this many new synthetic bookings instead of a file (a refresh run)')
  .option('--seed <n>', 'seed of the synthetic batch (default: derived from the workflow id)')
  .option('--env <name>', 'environment from config/project.yml (default: MLOPS_ENV or dev)')
  .option('--feature-set <name>', 'feature set from config/project.yml (default: model.feature_set)')
  .option('--training-rows <rows>', 'segment (Online rows, the default) or all (every segment)')
  .option('--variant <names>', 'variants to train: basic, custom, feature_lookup, a comma-separated list or all (default: model.variants)')
  .option('--workflow-id <id>', 'business id of the run; starting an id that is running attaches to it')
  .option('--wait', 'wait for the result and print it as JSON')
  .action(async (options: RunOptions) => {
    const settings = stackSettings();
    if (options.data && options.synthetic) {
      throw new Error('Pass either --data PATH or --synthetic ROWS, not both: a run ingests one source.');
    }
    if (options.seed !== undefined && !Number.isInteger(Number(options.seed))) {
      throw new Error(`Invalid --seed ${options.seed}: expected a whole number.`);
    }
    const synthetic = options.synthetic
      ? { rows: Number(options.synthetic), ...(options.seed ? { seed: Number(options.seed) } : {}) }
      : undefined;
    const spec = pipelineSpec({
      dataPath: options.data && path.resolve(options.data),
      synthetic,
      env: options.env,
      featureSet: options.featureSet,
      variant: options.variant,
      trainingRows: options.trainingRows,
    });
    const client = await connectClient(settings);
    const handle = await startPipeline(client, settings, spec, options.workflowId);
    const { runId } = await handle.describe();
    console.log(`Started ${handle.workflowId}\n  ${workflowUiUrl(settings, handle.workflowId, runId)}`);
    if ((await workflowPollerCount(client, settings)) === 0) {
      console.warn(
        `Warning: no worker is polling task queue ${settings.taskQueue}; the run waits until one starts. ` +
          'Start one with npm run worker.',
      );
    }
    if (options.wait) {
      const result = await handle.result();
      console.log(JSON.stringify(result, null, 2));
      console.log(`Data quality of the ingested file:\n${formatQualityReport(result.tables.report)}`);
    }
  });

program
  .command('status <workflowId>')
  .description('Show the status and current stage of a run')
  .action(async (workflowId: string) => {
    const settings = stackSettings();
    const client = await connectClient(settings);
    const handle = client.workflow.getHandle(workflowId);
    const description = await handle.describe();
    // A closed run's result, or the reason it failed.
    let outcome: { result?: unknown; failure?: string } = {};
    if (description.status.name !== 'RUNNING') {
      outcome = await handle.result().then(
        (result: unknown) => ({ result }),
        (error: unknown) => ({ failure: failureMessages(error) }),
      );
    }
    // The stages of the run's variant runs, where approvals wait.
    const variants: Record<string, string | null> = {};
    for (const variant of Object.keys(loadProjectConfig().variants)) {
      const child = await client.workflow
        .getHandle(variantWorkflowId(workflowId, variant))
        .describe()
        .catch(() => undefined);
      if (child) variants[variant] = `${child.status.name}: ${child.typedSearchAttributes.get(MLOPS_STAGE) ?? 'starting'}`;
    }
    console.log(
      JSON.stringify(
        {
          workflowId,
          runId: description.runId,
          status: description.status.name,
          stage: description.typedSearchAttributes.get(MLOPS_STAGE) ?? null,
          ...(Object.keys(variants).length > 0 ? { variants } : {}),
          startTime: description.startTime,
          closeTime: description.closeTime ?? null,
          ...outcome,
          ui: workflowUiUrl(settings, workflowId, description.runId),
        },
        null,
        2,
      ),
    );
  });

/**
 * Returns the run that waits for approval: the given run itself (trained inline by older versions) or
 * one of its variant runs. Falls back to the given id, whose update then explains that nothing waits.
 */
async function waitingRun(client: Client, pipelineId: string, variants: string[]): Promise<string> {
  const waiting: string[] = [];
  for (const id of [pipelineId, ...variants.map((variant) => variantWorkflowId(pipelineId, variant))]) {
    // The stage search attribute needs no worker, unlike a query. A variant the run does not train has no run.
    const description = await client.workflow
      .getHandle(id)
      .describe()
      .catch((error: Error) => {
        if (error instanceof WorkflowNotFoundError) return undefined;
        throw error;
      });
    if (description?.status.name === 'RUNNING' && description.typedSearchAttributes.get(MLOPS_STAGE) === 'awaiting-approval') {
      waiting.push(id);
    }
  }
  if (waiting.length > 1) {
    throw new Error(`Several runs wait for approval: ${waiting.join(', ')}. Choose one with --variant NAME.`);
  }
  return waiting[0] ?? pipelineId;
}

for (const [name, update, verb] of [
  ['approve', approveUpdate, 'Approve'],
  ['reject', rejectUpdate, 'Reject'],
] as const) {
  program
    .command(`${name} <workflowId>`)
    .description(`${verb} the promotion a run waits for (registry.promotion.approval.required in the config)`)
    .option('--reason <text>', 'why, stored with the decision')
    .option('--by <name>', 'who decides (default: the current user)')
    .option('--variant <name>', "the variant's run to decide for (default: the one that waits)")
    .action(async (pipelineId: string, options: { reason?: string; by?: string; variant?: string }) => {
      const client = await connectClient(stackSettings());
      const workflowId = options.variant
        ? variantWorkflowId(pipelineId, options.variant)
        : await waitingRun(client, pipelineId, Object.keys(loadProjectConfig().variants));
      const handle = client.workflow.getHandle(workflowId);
      try {
        const state = await handle.executeUpdate(update, {
          args: [{ by: options.by ?? os.userInfo().username, ...(options.reason ? { reason: options.reason } : {}) }],
        });
        console.log(`${workflowId}: promotion of version ${state.version} ${state.outcome?.status}`);
      } catch (error) {
        if (error instanceof WorkflowNotFoundError) {
          const finished = await handle.describe().catch(() => undefined);
          console.error(
            finished
              ? `Run ${workflowId} has ended (${finished.status.name}); nothing waits for approval.`
              : `No run ${workflowId} found. List runs in the Temporal UI or pass the id that 'pipeline run' printed.`,
          );
        } else if (error instanceof WorkflowUpdateFailedError) {
          console.error(`${workflowId}: ${error.cause?.message ?? error.message}`);
        } else {
          throw error;
        }
        process.exitCode = 1;
      }
    });
}

program
  .command('tables')
  .description('List the catalog tables of an environment with their versions and change counts')
  .option('--env <name>', 'environment from config/project.yml (default: MLOPS_ENV or dev)')
  .action((options: { env?: string }) => {
    const config = loadProjectConfig();
    const env = resolveEnvironment(config, options.env);
    const { catalog, schema } = config.environments[env];
    const local = new LocalCatalog(catalogDir(stackSettings()));
    for (const name of Object.values(config.tables)) {
      const history = local.history({ catalog, schema, name });
      console.log(`${catalog}.${schema}.${name}: ${history.length === 0 ? 'no versions' : `${history.length} versions`}`);
      for (const entry of history) {
        const changes = entry.changes
          ? ` +${entry.changes.inserted} ~${entry.changes.updated} -${entry.changes.deleted}`
          : '';
        console.log(`  v${entry.version} ${entry.timestamp} ${entry.operation.padEnd(6)} ${entry.rowCount} rows${changes}`);
      }
      const report = history[history.length - 1]?.report as QualityReport | undefined;
      // Quarantine versions carry no report, and versions written by older code may lack fields.
      if (report?.checks) console.log(`  data quality of the newest version:\n${formatQualityReport(report, '    ')}`);
    }
  });

program
  .command('endpoints')
  .description('List the serving endpoints with their state, served versions and traffic routes')
  .action(async () => {
    const serving = new ServingClient(servingUrl(stackSettings()));
    const endpoints = await serving.list();
    if (endpoints.length === 0) console.log('No serving endpoints.');
    for (const summary of endpoints) {
      const endpoint = (await serving.get(summary.name)) ?? summary;
      const routes = endpoint.config?.traffic_config?.routes ?? [];
      console.log(`${endpoint.name}: ${endpoint.state.ready} ${endpoint.state.config_update}${endpoint.state_message ? ` (${endpoint.state_message})` : ''}`);
      for (const entity of endpoint.config?.served_entities ?? []) {
        const share = routes.find((route) => route.served_entity_name === entity.name)?.traffic_percentage;
        console.log(`  ${entity.name}: ${entity.entity_name} version ${entity.entity_version}, ${share ?? 100}% of traffic, ${entity.state?.deployment ?? ''}`);
      }
      console.log(`  invocations: ${serving.invocationsUrl(endpoint.name)}`);
    }
  });

program
  .command('deploy')
  .description("Roll a registered version of a variant's model out to its endpoint, with smoke test and rollback")
  .option('--variant <name>', 'variant whose model and endpoint to use', 'basic')
  .option('--version <n>', 'model version to deploy (default: the version of --alias)')
  .option('--alias <name>', 'registry alias whose version to deploy (default: serving.deploy_alias)')
  .option('--rollout <strategy>', 'direct or canary (default: serving.rollout.strategy)')
  .option('--env <name>', 'environment from config/project.yml (default: MLOPS_ENV or dev)')
  .option('--wait', 'wait for the result and print it as JSON')
  .action(async (options: { variant: string; version?: string; alias?: string; rollout?: string; env?: string; wait?: boolean }) => {
    const settings = stackSettings();
    if (options.version !== undefined && !/^[1-9][0-9]*$/.test(options.version)) {
      throw new Error(`Invalid --version ${options.version}: expected a model version number such as 3.`);
    }
    if (options.version !== undefined && options.alias !== undefined) {
      throw new Error(`Give --version or --alias, not both (got --version ${options.version} and --alias ${options.alias}).`);
    }
    if (options.variant === 'all') {
      throw new Error('Invalid --variant all: deploy serves one variant. Choose basic, custom or feature_lookup.');
    }
    if (options.rollout !== undefined && options.rollout !== 'direct' && options.rollout !== 'canary') {
      throw new Error(`Invalid --rollout ${options.rollout}: use direct or canary.`);
    }
    const config = loadProjectConfig();
    const spec = pipelineSpec({ dataPath: undefined, synthetic: { rows: 1 }, env: options.env, variant: options.variant });
    const serving = options.rollout ? { ...spec.serving, rollout: rolloutSpec(config.serving.rollout, options.rollout) } : spec.serving;
    const test = new LocalCatalog(catalogDir(settings)).latest({ catalog: spec.catalog, schema: spec.schema, name: spec.ingest.tables.test });
    if (!test) {
      throw new Error(`Table ${spec.catalog}.${spec.schema}.${spec.ingest.tables.test} has no version, so there are no smoke-test records. Run the pipeline first.`);
    }
    const input: DeployModelVersionInput = {
      serving,
      model: { name: spec.registry.modelName, ...(options.version ? { version: options.version } : { alias: options.alias ?? serving.deployAlias ?? 'champion' }) },
      test: { catalog: spec.catalog, schema: spec.schema, name: spec.ingest.tables.test, version: test.version },
      inputs: bookingColumns(spec),
      output: spec.training.flavor === 'pyfunc' ? 'label_and_probability' : 'label',
    };
    const client = await connectClient(settings);
    // The random suffix keeps two deploys started in the same second apart.
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
    const workflowId = `deploy-${serving.endpoint}-${stamp}-${randomBytes(3).toString('hex')}`;
    const handle = await client.workflow.start(deployModelVersion, { taskQueue: settings.taskQueue, workflowId, args: [input] });
    console.log(`Started ${workflowId}\n  ${workflowUiUrl(settings, workflowId, handle.firstExecutionRunId)}`);
    if (options.wait) {
      const result = await handle.result();
      console.log(JSON.stringify(result, null, 2));
      if (serving.rollout?.strategy === 'canary' && result.deployment.rollout?.strategy === 'direct' && !result.deployment.unchanged) {
        console.log('No other version served on the endpoint, so the canary rollout gave the version all traffic at once.');
      }
    }
  });

program
  .command('endpoint-delete <name>')
  .description('Delete a serving endpoint (deleting one that does not exist succeeds)')
  .option('--wait', 'wait until it is deleted')
  .action(async (name: string, options: { wait?: boolean }) => {
    const settings = stackSettings();
    const spec = pipelineSpec({ synthetic: { rows: 1 } });
    const client = await connectClient(settings);
    const workflowId = `delete-endpoint-${name}-${Date.now()}`;
    const handle = await client.workflow.start(deleteEndpoint, {
      taskQueue: settings.taskQueue,
      workflowId,
      args: [{ serving: { ...spec.serving, endpoint: name } }],
    });
    console.log(`Started ${workflowId}`);
    if (options.wait) {
      const result = await handle.result();
      console.log(result.deleted ? `Deleted endpoint ${name}.` : `Endpoint ${name} did not exist.`);
    }
  });

program
  .command('synth')
  .description('Write a synthetic bookings CSV with the real schema and quirks')
  .requiredOption('--out <path>', 'file to write')
  .option('--rows <n>', 'number of bookings', '10000')
  .option('--seed <n>', 'random seed; the same seed gives the same file', '42')
  .action((options: { out: string; rows: string; seed: string }) => {
    const rows = Number(options.rows);
    const seed = Number(options.seed);
    if (!Number.isInteger(rows) || rows < 1) throw new Error(`Invalid --rows ${options.rows}: expected a positive integer.`);
    if (!Number.isInteger(seed)) throw new Error(`Invalid --seed ${options.seed}: expected an integer.`);
    console.log(writeSyntheticBookings(path.resolve(options.out), rows, seed));
  });

/**
 * Returns the messages of an error and its causes, such as `Workflow execution failed: Activity task
 * failed: Model version 99 not found`, because a workflow failure's own message names no reason.
 */
function failureMessages(error: unknown): string {
  const messages: string[] = [];
  for (let current: unknown = error; current instanceof Error; current = current.cause) {
    if (current.message && !messages.includes(current.message)) messages.push(current.message);
  }
  return messages.join(': ');
}

program.parseAsync().then(
  // Commands that failed without throwing set process.exitCode.
  () => process.exit(process.exitCode ?? 0),
  (error: Error) => {
    console.error(`pipeline: ${failureMessages(error)}`);
    process.exit(1);
  },
);
