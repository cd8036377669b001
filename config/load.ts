import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { REPO_ROOT } from '../common/paths';
import type { PipelineSpec, RolloutSpec, TrainingSpec, VariantName, VariantSpec } from '../workflows/types';
import { ProjectConfigSchema, type ProjectConfig } from './schema';

export const DEFAULT_CONFIG_FILE = path.join(REPO_ROOT, 'config', 'project.yml');

/** Configuration error that names the file, the key path and what was expected. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Reads and validates the project config; every problem is reported with its key path. */
export function loadProjectConfig(file: string = DEFAULT_CONFIG_FILE): ProjectConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`Cannot read config file ${file}: ${(error as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = YAML.parse(text);
  } catch (error) {
    throw new ConfigError(`Config file ${file} is not valid YAML: ${(error as Error).message}`);
  }
  const parsed = ProjectConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const key = issue.path.join('.') || '(root)';
      return `  ${key}: ${issue.message}`;
    });
    throw new ConfigError(`Config file ${file} is invalid:\n${problems.join('\n')}`);
  }
  return parsed.data;
}

/** Returns the environment name from `--env`, then MLOPS_ENV, then `dev`, and checks the config defines it. */
export function resolveEnvironment(config: ProjectConfig, requested?: string): string {
  const env = requested ?? process.env.MLOPS_ENV ?? 'dev';
  if (!config.environments[env]) {
    throw new ConfigError(
      `Unknown environment '${env}'. Defined environments: ${Object.keys(config.environments).join(', ')}. ` +
        'Pass one of them with --env or MLOPS_ENV.',
    );
  }
  return env;
}

export interface SpecOptions {
  env: string;
  sourcePath: string;
  gitSha: string;
  branch: string;
  /** Overrides of serving timings, used by tests that cannot wait minutes. */
  serving?: Partial<PipelineSpec['serving']>;
  /** Feature set to train with instead of model.feature_set. */
  featureSet?: string;
  /** Variants to train, by name from the config's variants, or `all` (default: model.variants). */
  variants?: string[];
  /** Rows to train on instead of model.training_rows. */
  trainingRows?: 'segment' | 'all';
}

/** Checks variant names against the config and expands `all`; fails naming the defined variants. */
export function resolveVariants(config: ProjectConfig, names: string[]): VariantName[] {
  const defined = Object.keys(config.variants) as VariantName[];
  const expanded = names.flatMap((name) => (name === 'all' ? defined : [name]));
  const unknown = expanded.filter((name) => !defined.includes(name as VariantName));
  if (unknown.length > 0 || expanded.length === 0) {
    throw new Error(
      `Unknown variant ${unknown.map((n) => JSON.stringify(n)).join(', ') || '(none given)'}. ` +
        `Choose from ${defined.join(', ')}, or all.`,
    );
  }
  return [...new Set(expanded)] as VariantName[];
}

/** Returns the training settings of one feature set; an unknown name fails with the defined ones. */
export function trainingSpec(
  config: ProjectConfig,
  featureSet: string,
  trainingRows: 'segment' | 'all' = 'segment',
): TrainingSpec {
  const set = config.feature_sets[featureSet];
  if (!set) {
    throw new Error(
      `Unknown feature set ${JSON.stringify(featureSet)}. Choose one of ${Object.keys(config.feature_sets).join(', ')} ` +
        '(feature_sets in config/project.yml).',
    );
  }
  // Training on every segment makes the segment itself an input.
  const segment = config.data.renames[config.data.training_segment.column] ?? config.data.training_segment.column;
  const categoricalInputs =
    trainingRows === 'all' && !set.categorical_inputs.includes(segment) ? [...set.categorical_inputs, segment] : set.categorical_inputs;
  return {
    flavor: 'sklearn',
    featureSet,
    trainingRows,
    numericInputs: set.numeric_inputs,
    categoricalInputs,
    derivedInputs: set.derived_inputs,
    parameters: set.parameters,
    seed: config.model.seed,
  };
}

/** Converts the config's rollout section; the canary settings travel only with the canary strategy. */
export function rolloutSpec(rollout: ProjectConfig['serving']['rollout'], strategy = rollout.strategy): RolloutSpec {
  if (strategy === 'direct') return { strategy: 'direct' };
  const canary = rollout.canary;
  return {
    strategy: 'canary',
    canary: {
      trafficPercentage: canary.traffic_percentage,
      durationSeconds: canary.duration_seconds,
      checkIntervalSeconds: canary.check_interval_seconds,
      minRequests: canary.min_requests,
      maxErrorRate: canary.max_error_rate,
      maxP95LatencyMs: canary.max_p95_latency_ms,
      onInsufficientTraffic: canary.on_insufficient_traffic,
    },
  };
}

/** Resolves the config into the plain pipeline spec a workflow run carries. */
export function buildPipelineSpec(config: ProjectConfig, options: SpecOptions): PipelineSpec {
  const { catalog, schema } = config.environments[options.env];
  const prefix = config.registry.use_catalog_prefix ? `${catalog}.${schema}.` : '';
  const variants = resolveVariants(config, options.variants ?? config.model.variants).map(
    (name): VariantSpec => ({
      name,
      experiment: config.variants[name].experiment,
      artifactPath: config.variants[name].artifact_path,
      modelName: `${prefix}${config.variants[name].registered_model}`,
      endpoint: config.variants[name].endpoint,
      flavor: config.variants[name].flavor,
      ...(config.variants[name].feature_lookup
        ? {
            featureLookup: {
              table: config.tables.features,
              key: config.data.renames[config.data.id_column] ?? config.data.id_column,
              features: config.variants[name].feature_lookup!.features,
              functionName: config.variants[name].feature_lookup!.function,
            },
          }
        : {}),
    }),
  );
  const [variant] = variants;
  return {
    env: options.env,
    catalog,
    schema,
    sourcePath: path.resolve(options.sourcePath),
    variants,
    variant: variant.name,
    ingest: {
      idColumn: config.data.id_column,
      renames: config.data.renames,
      numericFeatures: config.data.numeric_features,
      categoricalFeatures: config.data.categorical_features,
      valueCorrections: config.data.value_corrections,
      target: config.data.target,
      trainingSegment: config.data.training_segment,
      testFraction: config.data.test_fraction,
      onInvalidRows: config.data.on_invalid_rows,
      tables: config.tables,
    },
    training: {
      ...trainingSpec(config, options.featureSet ?? config.model.feature_set, options.trainingRows ?? config.model.training_rows),
      flavor: variant.flavor,
      ...(variant.featureLookup ? { featureLookup: variant.featureLookup } : {}),
    },
    tracking: {
      experiment: variant.experiment,
      artifactPath: variant.artifactPath,
      gitSha: options.gitSha,
      branch: options.branch,
    },
    registry: {
      modelName: variant.modelName,
      alias: config.registry.alias,
      promotion: {
        championAlias: config.registry.promotion.champion_alias,
        metric: config.registry.promotion.metric,
        margin: config.registry.promotion.margin,
        approval: {
          required: config.registry.promotion.approval.required,
          timeoutSeconds: config.registry.promotion.approval.timeout_hours * 3600,
          onTimeout: config.registry.promotion.approval.on_timeout,
        },
      },
    },
    serving: {
      endpoint: variant.endpoint,
      workloadSize: config.serving.workload_size,
      scaleToZeroEnabled: config.serving.scale_to_zero_enabled,
      readyTimeoutSeconds: config.serving.ready_timeout_seconds,
      pollIntervalSeconds: config.serving.poll_interval_seconds,
      conflictRetry: {
        maximumAttempts: config.serving.conflict_retry.maximum_attempts,
        intervalSeconds: config.serving.conflict_retry.interval_seconds,
      },
      deployAlias: config.serving.deploy_alias,
      ...(config.serving.inference_table.enabled ? { inferenceTable: { catalog, schema } } : {}),
      smokeTest: {
        records: config.serving.smoke_test.records,
        requests: config.serving.smoke_test.requests,
        maxLatencyMs: config.serving.smoke_test.max_latency_ms,
      },
      rollout: rolloutSpec(config.serving.rollout),
      ...options.serving,
    },
  };
}
