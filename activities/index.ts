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
import { registerModelVersion, type RegisterInput } from './registry';
import {
  deployServingEndpoint,
  smokeTestEndpoint,
  waitForEndpointReady,
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
}

/** Reads the first test-table row (by booking id) restricted to the model inputs. */
export async function readSmokeTestRecord(catalogRoot: string, input: SmokeTestTableInput): Promise<Record<string, unknown>> {
  const file = new LocalCatalog(catalogRoot).snapshotPath(input.test);
  const { instance, connection } = await openDuckDB();
  try {
    const columns = input.inputs.map(quoteIdent).join(', ');
    const reader = await connection.runAndReadAll(
      `SELECT ${columns} FROM read_parquet(${quoteLiteral(file)}) ORDER BY booking_id LIMIT 1`,
    );
    return reader.getRowObjectsJson()[0] as Record<string, unknown>;
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}

/**
 * Binds every activity to the platform adapters of the embedded local stack. Workflows see only the
 * activity names and their serialisable inputs and outputs.
 */
export function createActivities(settings: StackSettings) {
  const catalogRoot = catalogDir(settings);
  const jobsRoot = jobsDir(settings);
  const trackingUri = mlflowUrl(settings);
  const registry = new MlflowRegistry(trackingUri);
  const serving = new ServingClient(servingUrl(settings));

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
    deployServingEndpoint: (input: DeployInput) => deployServingEndpoint(serving, input),
    waitForEndpointReady: async (input: DeployInput) => {
      const endpoint = await waitForEndpointReady(serving, input);
      return { endpoint: endpoint.name, configVersion: endpoint.config?.config_version };
    },
    smokeTestEndpoint: async (input: SmokeTestTableInput): Promise<SmokeTestResult> => {
      const record = await readSmokeTestRecord(catalogRoot, input);
      return smokeTestEndpoint(serving, { endpoint: input.endpoint, record, output: input.output ?? 'label' });
    },
  };
}

export type Activities = ReturnType<typeof createActivities>;
