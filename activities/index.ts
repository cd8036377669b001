import path from 'node:path';
import { catalogDir, jobsDir, mlflowUrl, servingUrl, type StackSettings } from '../config/stack';
import { LocalCatalog } from '../platform/catalog/local';
import { MlflowRegistry } from '../platform/registry/mlflow-registry';
import { ServingClient } from '../platform/serving/client';
import type { SmokeTestResult, TableRef } from '../workflows/types';
import { workflowIds } from './context';
import { ingestBookings, openDuckDB, type IngestInput } from './ingestion';
import { quoteIdent, quoteLiteral } from './ingestion-sql';
import { updateFeatureTable, type FeatureTableInput } from './features';
import { applyPromotion, evaluatePromotion, type ApplyPromotionInput, type PromotionInput } from './promotion';
import { registerModelVersion, resolveAliasVersion, type AliasInput, type RegisterInput } from './registry';
import {
  deleteServingEndpoint,
  deployServingEndpoint,
  observeCanary,
  readServingEndpoint,
  smokeTestEndpoint,
  waitForEndpointReady,
  type CanaryInput,
  type DeployInput,
  type PredictionOutput,
} from './serving';
import { generateSyntheticBatch, type SyntheticBatchInput } from './synthetic';
import { logTrainingRun, trainModel, type LogRunInput, type TrainInput } from './training';

export interface SmokeTestTableInput {
  endpoint: string;
  test: TableRef;
  inputs: string[];
  /** Prediction shape of the served model; absent in runs recorded before it existed (label). */
  output?: PredictionOutput;
  /** Test-table rows per request (default 1). */
  records?: number;
  /** Timed requests after a warm-up (default 1, with no warm-up). */
  requests?: number;
  maxLatencyMs?: number;
  /** Served entity to query directly, whatever the traffic routes. */
  servedEntity?: string;
}

/** Reads the first `limit` test-table rows (by booking id) restricted to the model inputs. */
export async function readSmokeTestRecords(
  catalogRoot: string,
  input: Pick<SmokeTestTableInput, 'test' | 'inputs'>,
  limit: number,
): Promise<Record<string, unknown>[]> {
  const file = new LocalCatalog(catalogRoot).snapshotPath(input.test);
  const { instance, connection } = await openDuckDB();
  try {
    const columns = input.inputs.map(quoteIdent).join(', ');
    const reader = await connection.runAndReadAll(
      `SELECT ${columns} FROM read_parquet(${quoteLiteral(file)}) ORDER BY booking_id LIMIT ${Math.max(1, Math.floor(limit))}`,
    );
    return reader.getRowObjectsJson() as Record<string, unknown>[];
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

/**
 * Binds every activity to the platform adapters of the embedded local stack. Workflows see only the
 * activity names and their serialisable inputs and outputs.
 */
export function createActivities(settings: StackSettings, overrides: { servingUrl?: string } = {}) {
  const catalogRoot = catalogDir(settings);
  const jobsRoot = jobsDir(settings);
  const trackingUri = mlflowUrl(settings);
  const registry = new MlflowRegistry(trackingUri);
  // Tests point the serving activities at a serving plane of their own.
  const serving = new ServingClient(overrides.servingUrl ?? servingUrl(settings));

  return {
    generateSyntheticBookings: async (input: SyntheticBatchInput) =>
      generateSyntheticBatch(path.join(settings.stateDir, 'data'), workflowIds().workflowId, input),
    ingestBookings: (input: IngestInput) => ingestBookings(catalogRoot, input),
    updateFeatureTable: (input: FeatureTableInput) => updateFeatureTable(catalogRoot, input),
    trainModel: (input: TrainInput) => trainModel(catalogRoot, jobsRoot, input),
    logTrainingRun: (input: LogRunInput) => logTrainingRun(catalogRoot, jobsRoot, trackingUri, input),
    registerModelVersion: (input: RegisterInput) => registerModelVersion(registry, input),
    evaluatePromotion: (input: PromotionInput) => evaluatePromotion(registry, catalogRoot, jobsRoot, trackingUri, input),
    applyPromotion: (input: ApplyPromotionInput) => applyPromotion(registry, input),
    resolveAliasVersion: (input: AliasInput) => resolveAliasVersion(registry, input),
    readServingEndpoint: (input: { endpoint: string }) => readServingEndpoint(serving, input),
    deployServingEndpoint: (input: DeployInput) => deployServingEndpoint(serving, input),
    waitForEndpointReady: async (input: DeployInput) => {
      const endpoint = await waitForEndpointReady(serving, input);
      return { endpoint: endpoint.name, configVersion: endpoint.config?.config_version };
    },
    smokeTestEndpoint: async (input: SmokeTestTableInput): Promise<SmokeTestResult> => {
      const records = await readSmokeTestRecords(catalogRoot, input, input.records ?? 1);
      return smokeTestEndpoint(serving, {
        endpoint: input.endpoint,
        records,
        output: input.output ?? 'label',
        ...(input.servedEntity ? { servedEntity: input.servedEntity } : {}),
        ...(input.requests ? { requests: input.requests } : {}),
        ...(input.maxLatencyMs ? { maxLatencyMs: input.maxLatencyMs } : {}),
      });
    },
    observeCanary: (input: CanaryInput) => observeCanary(serving, input),
    deleteServingEndpoint: (input: { endpoint: string }) => deleteServingEndpoint(serving, input),
  };
}

export type Activities = ReturnType<typeof createActivities>;
