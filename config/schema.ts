import { z } from 'zod';

/** Numeric dtypes a feature column can be converted to. */
export const NumericDtype = z.enum(['int8', 'int16', 'int32', 'int64', 'float32', 'float64']);

const Identifier = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a SQL identifier: letters, digits and underscores');

// Databricks endpoint names: letters, digits, '-' and '_', at most 63 characters.
const EndpointName = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,63}$/, "must be 1-63 characters of letters, digits, '-' and '_'");

const Alias = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9_-]*$/, "must start with a letter and contain only letters, digits, '-' and '_'")
  .refine((alias) => alias !== 'latest', { message: "'latest' is reserved by MLflow; choose another alias" });

/** Test metrics the promotion gate can compare; log_loss is the one where lower is better. */
export const PromotionMetric = z.enum(['accuracy', 'roc_auc', 'precision', 'recall', 'f1', 'log_loss']);

const FeatureSet = z
  .object({
    numeric_inputs: z.array(Identifier).min(1),
    categorical_inputs: z.array(Identifier),
    /** Features the model pipeline computes from the inputs; the train job checks the names. */
    derived_inputs: z.array(Identifier),
    parameters: z.record(z.string(), z.union([z.number(), z.string(), z.boolean()])),
  })
  .strict();

const Environment = z.object({ catalog: Identifier, schema: Identifier }).strict();

const Variant = z
  .object({
    experiment: z.string().startsWith('/', 'must be an absolute workspace path such as /Shared/name'),
    registered_model: Identifier,
    artifact_path: z.string().regex(/^[A-Za-z0-9_.-]+$/),
    endpoint: EndpointName,
    /** sklearn: the pipeline, predicting 0/1. pyfunc: the custom wrapper, predicting label and probability. */
    flavor: z.enum(['sklearn', 'pyfunc']),
    /** Features the training rows take from the feature table, and the feature function's name. */
    feature_lookup: z.object({ features: z.array(Identifier).min(1), function: Identifier }).strict().optional(),
  })
  .strict();

export const ProjectConfigSchema = z
  .object({
    environments: z.record(z.string(), Environment).refine((envs) => Object.keys(envs).length > 0, {
      message: 'must define at least one environment',
    }),
    data: z
      .object({
        id_column: z.string().min(1),
        renames: z.record(z.string(), Identifier),
        numeric_features: z
          .array(
            z
              .object({ name: Identifier, dtype: NumericDtype, min: z.number().optional(), max: z.number().optional() })
              .strict(),
          )
          .min(1),
        categorical_features: z.array(Identifier),
        // Replacements applied to categorical values before any check: {column: {from: to}}.
        value_corrections: z.record(Identifier, z.record(z.string(), z.string())).default({}),
        target: z
          .object({
            name: Identifier,
            values: z.record(z.string(), z.union([z.literal(0), z.literal(1)])),
          })
          .strict(),
        training_segment: z.object({ column: Identifier, value: z.string() }).strict(),
        test_fraction: z.number().gt(0).lt(1),
        on_invalid_rows: z.enum(['fail', 'quarantine']).default('fail'),
      })
      .strict(),
    tables: z
      .object({
        train: Identifier,
        test: Identifier,
        extra: Identifier,
        quarantine: Identifier.default('quarantine'),
        features: Identifier.default('hotel_features'),
      })
      .strict(),
    model: z
      .object({
        feature_set: Identifier,
        /** Variants a run trains unless --variant names others. */
        variants: z.array(z.enum(['basic', 'custom', 'feature_lookup'])).min(1),
        training_rows: z.enum(['segment', 'all']),
        seed: z.number().int(),
      })
      .strict(),
    feature_sets: z.record(Identifier, FeatureSet).refine((sets) => Object.keys(sets).length > 0, {
      message: 'must define at least one feature set',
    }),
    variants: z.object({ basic: Variant, custom: Variant, feature_lookup: Variant }).strict(),
    registry: z
      .object({
        use_catalog_prefix: z.boolean(),
        alias: Alias,
        promotion: z
          .object({
            champion_alias: Alias,
            metric: PromotionMetric,
            margin: z.number().min(0),
            approval: z
              .object({
                required: z.boolean(),
                timeout_hours: z.number().positive(),
                on_timeout: z.enum(['approve', 'reject']),
              })
              .strict(),
          })
          .strict(),
      })
      .strict()
      .refine((registry) => registry.alias !== registry.promotion.champion_alias, {
        message: 'alias and promotion.champion_alias must differ, because they move at different times',
      }),
    serving: z
      .object({
        workload_size: z.enum(['Small', 'Medium', 'Large']),
        scale_to_zero_enabled: z.boolean(),
        ready_timeout_seconds: z.number().positive(),
        poll_interval_seconds: z.number().positive(),
        conflict_retry: z
          .object({ maximum_attempts: z.number().int().min(1), interval_seconds: z.number().positive() })
          .strict(),
        deploy_alias: Alias,
        inference_table: z.object({ enabled: z.boolean() }).strict(),
        smoke_test: z
          .object({
            records: z.number().int().min(1).max(1000),
            requests: z.number().int().min(1).max(100),
            max_latency_ms: z.number().positive(),
          })
          .strict(),
        rollout: z
          .object({
            strategy: z.enum(['direct', 'canary']),
            canary: z
              .object({
                traffic_percentage: z.number().int().min(1).max(99),
                duration_seconds: z.number().positive(),
                check_interval_seconds: z.number().positive(),
                min_requests: z.number().int().min(0),
                max_error_rate: z.number().min(0).max(1),
                max_p95_latency_ms: z.number().positive(),
                on_insufficient_traffic: z.enum(['promote', 'rollback']),
              })
              .strict(),
          })
          .strict(),
      })
      .strict(),
  })
  .strict()
  .superRefine((config, context) => {
    const aliases = [config.registry.alias, config.registry.promotion.champion_alias];
    if (!aliases.includes(config.serving.deploy_alias)) {
      context.addIssue({
        code: 'custom',
        path: ['serving', 'deploy_alias'],
        message: `the endpoint follows a registry alias the pipeline moves; use ${aliases.join(' or ')}`,
      });
    }
    for (const column of Object.keys(config.data.value_corrections)) {
      if (!config.data.categorical_features.includes(column)) {
        context.addIssue({
          code: 'custom',
          path: ['data', 'value_corrections', column],
          message: `corrections apply to categorical features only; ${column} is not in data.categorical_features`,
        });
      }
    }
    if (!(config.model.feature_set in config.feature_sets)) {
      context.addIssue({
        code: 'custom',
        path: ['model', 'feature_set'],
        message: `unknown feature set ${config.model.feature_set}; defined: ${Object.keys(config.feature_sets).join(', ')}`,
      });
    }
    const columns = new Set([
      ...config.data.numeric_features.map((f) => config.data.renames[f.name] ?? f.name),
      ...config.data.categorical_features.map((name) => config.data.renames[name] ?? name),
    ]);
    for (const [name, set] of Object.entries(config.feature_sets)) {
      for (const [key, inputs] of [['numeric_inputs', set.numeric_inputs], ['categorical_inputs', set.categorical_inputs]] as const) {
        inputs.forEach((input, index) => {
          if (!columns.has(input)) {
            context.addIssue({
              code: 'custom',
              path: ['feature_sets', name, key, index],
              message: `${input} is not a column of the ingested tables; use one of data.numeric_features or data.categorical_features`,
            });
          }
        });
      }
    }
  });

export type ProjectConfig = z.infer<typeof ProjectConfigSchema>;
