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

export type VariantName = 'basic' | 'custom' | 'feature_lookup';

/** Features the feature-lookup variant takes from the feature table instead of the training rows. */
export interface FeatureLookupSpec {
  /** Feature table name in the run's catalog and schema. */
  table: string;
  key: string;
  features: string[];
  /** Name of the feature function that computes lead_time from the two date columns. */
  functionName: string;
}

/** Names and model flavor of one variant, from the config's variants. */
export interface VariantSpec {
  name: VariantName;
  experiment: string;
  artifactPath: string;
  modelName: string;
  endpoint: string;
  flavor: TrainingSpec['flavor'];
  featureLookup?: FeatureLookupSpec;
}

export interface TrainingSpec {
  /** sklearn: the pipeline, predicting 0/1. pyfunc: the custom wrapper, predicting label and probability. */
  flavor: 'sklearn' | 'pyfunc';
  /** Name of the feature set in the config. */
  featureSet: string;
  numericInputs: string[];
  /** Features the model pipeline computes from the inputs. */
  derivedInputs: string[];
  /** Set for the feature-lookup variant. */
  featureLookup?: FeatureLookupSpec;
  /**
   * segment: the training segment's rows only. all: extra_set's rows join both sides by the booking-id
   * split. Absent in specs of older runs (segment).
   */
  trainingRows?: 'segment' | 'all';
  categoricalInputs: string[];
  parameters: Record<string, number | string | boolean>;
  seed: number;
}

export type PromotionMetric = 'accuracy' | 'roc_auc' | 'precision' | 'recall' | 'f1' | 'log_loss';

export interface PromotionSpec {
  championAlias: string;
  metric: PromotionMetric;
  /** The challenger must beat the champion by more than this. */
  margin: number;
  approval: { required: boolean; timeoutSeconds: number; onTimeout: 'approve' | 'reject' };
}

export interface PromotionDecision {
  /**
   * first_champion: no champion existed. promote: the challenger beat it by more than the margin.
   * keep_champion: it did not. already_champion: the alias already points at the challenger (a retry).
   */
  decision: 'first_champion' | 'promote' | 'keep_champion' | 'already_champion';
  /** Whether the gate lets the challenger become champion (an approval may still be required). */
  promote: boolean;
  metric: PromotionMetric;
  margin: number;
  challengerVersion: string;
  challengerScore: number;
  championVersion?: string;
  championScore?: number;
  /** Test table version both scores come from, as `catalog.schema.table@version`. */
  testTable: string;
  /** True when the champion was scored again because its own scores came from another test table version. */
  championRescored: boolean;
}

export interface ApprovalOutcome {
  /**
   * not_required: approval is off in the config. not_asked: the gate kept the champion. The timed_out
   * statuses apply the configured outcome after the approval timeout.
   */
  status: 'not_required' | 'not_asked' | 'approved' | 'rejected' | 'timed_out_approved' | 'timed_out_rejected';
  by?: string;
  reason?: string;
  /** ISO-8601 time of the decision. */
  at?: string;
}

export interface PromotionOutcome extends PromotionDecision {
  approval: ApprovalOutcome;
  /** True when the champion alias now points at the challenger. */
  promoted: boolean;
  championAlias: string;
  /** The champion version after this run; the endpoint serves it. */
  championVersionAfter?: string;
}

export interface ConflictRetry {
  maximumAttempts: number;
  intervalSeconds: number;
}

/** Canary release: a share of the traffic goes to the new version, which must stay healthy for a while. */
export interface CanarySpec {
  /** Share of the endpoint's traffic the new version gets during the canary, in percent. */
  trafficPercentage: number;
  durationSeconds: number;
  /** Time between two reads of the endpoint's metrics. */
  checkIntervalSeconds: number;
  /** Requests the new version must answer before its error rate and latency count. */
  minRequests: number;
  /** Highest share of failed requests (0 to 1) the new version may have. */
  maxErrorRate: number;
  maxP95LatencyMs: number;
  /** What to do when fewer than minRequests arrived during the canary. */
  onInsufficientTraffic: 'promote' | 'rollback';
}

/** direct: the new version takes all traffic once it passes the smoke test. canary: see CanarySpec. */
export type RolloutSpec = { strategy: 'direct' } | { strategy: 'canary'; canary: CanarySpec };

export interface SmokeTestSpec {
  /** Test-table rows per request. */
  records: number;
  /** Timed requests after one warm-up request. */
  requests: number;
  /** Highest median latency of the timed requests. */
  maxLatencyMs: number;
}

export interface ServingSpec {
  endpoint: string;
  workloadSize: 'Small' | 'Medium' | 'Large';
  scaleToZeroEnabled: boolean;
  readyTimeoutSeconds: number;
  pollIntervalSeconds: number;
  conflictRetry: ConflictRetry;
  /** Registry alias whose version the endpoint serves. Absent in specs of older runs (the champion). */
  deployAlias?: string;
  /** Catalog and schema of the payload table `<endpoint>_payload` that logs every request. Absent: off. */
  inferenceTable?: { catalog: string; schema: string };
  /** Absent in specs of older runs: one record, one request, no latency limit. */
  smokeTest?: SmokeTestSpec;
  /** Absent in specs of older runs (direct). */
  rollout?: RolloutSpec;
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
  /** Variants this run trains, each in a child workflow; absent in specs of older runs. */
  variants?: VariantSpec[];
  /**
   * The first variant. Its names fill `variant`, `tracking`, `registry.modelName`, `serving.endpoint`
   * and `training.flavor`, which a child workflow overrides with its own variant's.
   */
  variant: VariantName;
  ingest: IngestSpec;
  training: TrainingSpec;
  tracking: { experiment: string; artifactPath: string; gitSha: string; branch: string };
  registry: { modelName: string; alias: string; promotion: PromotionSpec };
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
   * How the file was checked. `one-pass` read it once, typed, and found nothing to report. `careful`
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
  /** How the version was rolled out; absent in results of older runs (direct). */
  rollout?: RolloutResult;
}

/** One served entity of an endpoint config, in the Databricks field names. */
export interface ServedEntityTarget {
  name: string;
  entity_name: string;
  entity_version: string;
  workload_size: 'Small' | 'Medium' | 'Large';
  scale_to_zero_enabled: boolean;
}

/** A whole endpoint config: served entities and the traffic routes between them (summing to 100). */
export interface EndpointTarget {
  entities: ServedEntityTarget[];
  routes: Array<{ served_entity_name: string; traffic_percentage: number }>;
}

/** What an endpoint served before a rollout, read before the update was sent. */
export interface EndpointSnapshot {
  endpoint: string;
  exists: boolean;
  /** The active config; absent when the endpoint does not exist. */
  config?: EndpointTarget;
  configVersion?: number;
  state?: { ready: string; config_update: string };
}

/** Error rate and latency of the new version while it took a share of the traffic. */
export interface CanaryReport {
  verdict: 'promote' | 'rollback';
  reason: string;
  servedEntity: string;
  requests: number;
  errors: number;
  errorRate: number;
  /** Upper bound of the latency histogram bucket holding the 95th percentile; absent without requests. */
  p95LatencyMs?: number;
  observedSeconds: number;
}

export interface RolloutResult {
  strategy: 'direct' | 'canary';
  servedEntity: string;
  /** Versions served before the rollout, empty for a new endpoint. */
  previousVersions: string[];
  canary?: CanaryReport;
}

export interface SmokeTestResult {
  endpoint: string;
  url: string;
  request: Record<string, unknown>;
  predictions: unknown[];
  latencyMs: number;
  servedModel?: string;
  /** Latency of each timed request; absent in results of older runs (one request). */
  latenciesMs?: number[];
  /** Median of latenciesMs. */
  medianLatencyMs?: number;
}

/** Result of one variant's training, registration, promotion and deployment. */
export interface VariantResult {
  /** Absent in results of runs started before variants were named in the result. */
  variant?: VariantName;
  /** Feature table version the feature-lookup variant trained with. */
  featureTable?: TableRef;
  training: TrainResult;
  run: TrackedRun;
  modelVersion: ModelVersionRef;
  /** Absent for runs started before the promotion gate existed. */
  promotion?: PromotionOutcome;
  /** Absent when no version is champion, because the first version's promotion was rejected. */
  deployment?: EndpointDeployment;
  smokeTest?: SmokeTestResult;
}

export interface PipelineResult {
  tables: IngestResult;
  /** One entry per variant, in the order of the spec's variants. */
  variants: VariantResult[];
}
