// Types shared by workflows, activities and clients. This module must stay free of Node built-ins
// because the workflow bundle imports it.

/** A catalog table version: activities pass this reference, never the rows. */
export interface TableRef {
  catalog: string;
  schema: string;
  name: string;
  version: number;
}

export interface NumericFeature {
  name: string;
  dtype: 'int8' | 'int16' | 'int32' | 'int64' | 'float32' | 'float64';
  /** Smallest valid value; smaller values are rejected. */
  min?: number;
  max?: number;
}

/** Ingest settings: how raw booking files become the train, test and extra tables. */
export interface IngestSpec {
  idColumn: string;
  renames: Record<string, string>;
  numericFeatures: NumericFeature[];
  categoricalFeatures: string[];
  /** Replacements of categorical values, applied before any check: {column: {from: to}}. */
  valueCorrections: Record<string, Record<string, string>>;
  target: { name: string; values: Record<string, 0 | 1> };
  trainingSegment: { column: string; value: string };
  testFraction: number;
  /** `fail` rejects a file with any invalid row; `quarantine` moves invalid rows to the quarantine table. */
  onInvalidRows: 'fail' | 'quarantine';
  tables: { train: string; test: string; extra: string; quarantine: string };
}

export interface TrainingSpec {
  numericInputs: string[];
  categoricalInputs: string[];
  parameters: Record<string, number | string | boolean>;
  seed: number;
}

export interface ConflictRetry {
  maximumAttempts: number;
  intervalSeconds: number;
}

export interface ServingSpec {
  endpoint: string;
  workloadSize: 'Small' | 'Medium' | 'Large';
  scaleToZeroEnabled: boolean;
  readyTimeoutSeconds: number;
  pollIntervalSeconds: number;
  conflictRetry: ConflictRetry;
}

/**
 * Everything one pipeline run needs, resolved from the project config by the client. It contains names
 * and settings only, with no data and no secrets, so it is safe in workflow history.
 */
export interface PipelineSpec {
  env: string;
  catalog: string;
  schema: string;
  /** CSV path on the worker host; ignored when `syntheticBatch` is set. */
  sourcePath: string;
  /** Generate this many new synthetic bookings and ingest them instead of a file (refresh runs). */
  syntheticBatch?: { rows: number; seed?: number };
  variant: 'basic';
  ingest: IngestSpec;
  training: TrainingSpec;
  tracking: { experiment: string; artifactPath: string; gitSha: string; branch: string };
  registry: { modelName: string; alias: string };
  serving: ServingSpec;
}

/** Data-quality figures of one ingestion. */
export interface QualityReport {
  sourceFile: string;
  sourceSha256: string;
  rowsIn: number;
  rowsTrain: number;
  rowsTest: number;
  rowsExtra: number;
  arrivalDatesNormalised: number;
  canceledShareTrain: number;
  /** Id, category and label values that had surrounding spaces removed. */
  valuesTrimmed: number;
  /** Rows equal to an earlier row in every column but the booking id. */
  duplicateRowsIgnoringId: number;
  /** Invalid rows moved to the quarantine table (quarantine mode only). */
  rowsQuarantined: number;
  /**
   * How the file was checked: `one-pass` read it once, typed, and found nothing to report; `careful`
   * loaded it as text and checked each rule, because the one-pass read found something to report.
   */
  checks: 'one-pass' | 'careful';
}

export interface IngestResult {
  train: TableRef;
  test: TableRef;
  extra: TableRef;
  /** True when every table already had a version from the same source file and settings. */
  reused: boolean;
  report: QualityReport;
  /** Rows each table's new version inserted, updated and deleted (merged by booking id). */
  changes: Record<'train' | 'test' | 'extra', { inserted: number; updated: number; deleted: number }>;
  /** Version of the quarantine table written by this ingestion, if it quarantined rows. */
  quarantine?: TableRef;
}

export interface TrainResult {
  /** Folder with the fitted model in MLflow format, on storage the logging job can read. */
  modelDir: string;
  /** Folder with the classification report and the ROC, precision-recall, confusion and importance plots. */
  evaluationDir: string;
  metrics: Record<string, number>;
  params: Record<string, string | number | boolean | null>;
  trainRows: number;
  testRows: number;
  reused: boolean;
}

export interface TrackedRun {
  runId: string;
  experimentId: string;
  modelId: string;
  /** Artifact location of the logged model, used as the model version source. */
  modelSource: string;
  runUrl: string;
  reused: boolean;
}

export interface ModelVersionRef {
  name: string;
  version: string;
  alias: string;
}

export interface EndpointDeployment {
  endpoint: string;
  /** True when the endpoint already served this version and no update was sent. */
  unchanged: boolean;
  configVersion?: number;
}

export interface SmokeTestResult {
  endpoint: string;
  url: string;
  request: Record<string, unknown>;
  predictions: unknown[];
  latencyMs: number;
  servedModel?: string;
}

export interface PipelineResult {
  tables: IngestResult;
  training: TrainResult;
  run: TrackedRun;
  modelVersion: ModelVersionRef;
  deployment: EndpointDeployment;
  smokeTest: SmokeTestResult;
}
