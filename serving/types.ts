import { z } from 'zod';

/**
 * Request schemas and response shapes of the Databricks Model Serving REST API subset that the local
 * serving plane implements. Field names follow the Databricks JSON (snake_case) so that Databricks
 * clients work against either backend.
 */

/** Endpoint and served entity names: they become URL path segments and log file names. */
export const RESOURCE_NAME_PATTERN = /^[A-Za-z0-9_-]{1,63}$/;
const RESOURCE_NAME_RULE = "must contain 1 to 63 characters, each a letter, digit, '-' or '_'";

export const WORKLOAD_SIZES = ['Small', 'Medium', 'Large'] as const;
export type WorkloadSize = (typeof WORKLOAD_SIZES)[number];

/** Number of uvicorn workers (`mlflow models serve -w`) that each workload size gets. */
export const WORKERS_BY_WORKLOAD_SIZE: Record<WorkloadSize, number> = { Small: 1, Medium: 2, Large: 4 };

// Optional fields accept null as well as a missing key, because some clients serialize unset
// fields as null.
export const servedEntityInputSchema = z.object({
  name: z.string().regex(RESOURCE_NAME_PATTERN, `served entity names ${RESOURCE_NAME_RULE}`).nullish(),
  entity_name: z.string().min(1, 'entity_name must name a registered model'),
  entity_version: z
    .string()
    .regex(/^[1-9][0-9]*$/, 'entity_version must be a registered model version as a positive integer string, such as "3"'),
  workload_size: z
    .enum(WORKLOAD_SIZES, `workload_size must be one of ${WORKLOAD_SIZES.join(', ')}`)
    .nullish()
    .transform((value) => value ?? 'Small'),
  scale_to_zero_enabled: z
    .boolean()
    .nullish()
    .transform((value) => value ?? true),
});

export const trafficRouteSchema = z.object({
  served_entity_name: z.string().min(1, 'served_entity_name must name a served entity of this config'),
  traffic_percentage: z
    .number()
    .int('traffic_percentage must be a whole number')
    .min(0, 'traffic_percentage must be between 0 and 100')
    .max(100, 'traffic_percentage must be between 0 and 100'),
});

export const trafficConfigSchema = z.object({ routes: z.array(trafficRouteSchema) });

/** Body of `PUT /api/2.0/serving-endpoints/{name}/config`, also the `config` of a create request. */
export const endpointConfigInputSchema = z.object({
  served_entities: z.array(servedEntityInputSchema).min(1, 'served_entities must list at least one served entity'),
  traffic_config: trafficConfigSchema.nullish(),
});

export const endpointTagSchema = z.object({
  key: z.string().min(1, 'tag keys must not be empty'),
  value: z.string().nullish(),
});

/**
 * Catalog, schema and table name prefix of an inference table. They become folder names of the local
 * catalog, so they allow only file-name-safe characters. The limit of 247 keeps `<prefix>_payload`
 * within the 255-byte file name limit of common file systems.
 */
export const TABLE_PART_PATTERN = /^[A-Za-z0-9_-]{1,247}$/;
const TABLE_PART_RULE = "must contain 1 to 247 characters, each a letter, digit, '-' or '_'";

/** `ai_gateway.inference_table_config`: where the endpoint logs its requests and responses. */
export const inferenceTableConfigSchema = z.object({
  catalog_name: z.string().regex(TABLE_PART_PATTERN, `catalog_name ${TABLE_PART_RULE}`).nullish(),
  schema_name: z.string().regex(TABLE_PART_PATTERN, `schema_name ${TABLE_PART_RULE}`).nullish(),
  table_name_prefix: z.string().regex(TABLE_PART_PATTERN, `table_name_prefix ${TABLE_PART_RULE}`).nullish(),
  enabled: z.boolean().nullish(),
});

/**
 * Fields of the Databricks AI gateway that the local serving plane does not implement. Databricks
 * supports only inference tables on custom model endpoints, so a request that sets one of these is
 * rejected instead of being ignored.
 */
export const UNSUPPORTED_AI_GATEWAY_FIELDS = ['usage_tracking_config', 'rate_limits', 'guardrails', 'fallback_config'] as const;

/** Body of `PUT /api/2.0/serving-endpoints/{name}/ai-gateway`, also the `ai_gateway` of a create request. */
export const aiGatewayInputSchema = z.object({
  inference_table_config: inferenceTableConfigSchema.nullish(),
  usage_tracking_config: z.unknown().optional(),
  rate_limits: z.unknown().optional(),
  guardrails: z.unknown().optional(),
  fallback_config: z.unknown().optional(),
});

/** Body of `POST /api/2.0/serving-endpoints`. Unknown fields are ignored. */
export const createEndpointRequestSchema = z.object({
  name: z.string().regex(RESOURCE_NAME_PATTERN, `endpoint names ${RESOURCE_NAME_RULE}`),
  config: endpointConfigInputSchema,
  tags: z.array(endpointTagSchema).nullish(),
  ai_gateway: aiGatewayInputSchema.nullish(),
});

export type ServedEntityInput = z.output<typeof servedEntityInputSchema>;
export type EndpointConfigInput = z.output<typeof endpointConfigInputSchema>;
export type CreateEndpointRequest = z.output<typeof createEndpointRequestSchema>;
export type AiGatewayInput = z.output<typeof aiGatewayInputSchema>;

/** An inference table config after validation. Names are present whenever `enabled` is true. */
export interface InferenceTableConfig {
  catalog_name?: string;
  schema_name?: string;
  table_name_prefix?: string;
  enabled: boolean;
}

/** The AI gateway settings of an endpoint, as stored and as returned by GET and PUT. */
export interface AiGateway {
  inference_table_config?: InferenceTableConfig;
}

export interface TrafficRoute {
  served_entity_name: string;
  traffic_percentage: number;
}

export interface EndpointTag {
  key: string;
  value?: string;
}

/** A served entity after validation, with its default name and defaults filled in. */
export interface ServedEntitySpec {
  name: string;
  entity_name: string;
  entity_version: string;
  workload_size: WorkloadSize;
  scale_to_zero_enabled: boolean;
}

/** A validated endpoint config: served entities plus routes whose percentages sum to 100. */
export interface EndpointConfigSpec {
  served_entities: ServedEntitySpec[];
  routes: TrafficRoute[];
}

/** The input keys of an invocation body, as accepted by MLflow's scoring server. */
export const INVOCATION_INPUT_KEYS = ['dataframe_records', 'dataframe_split', 'instances', 'inputs'] as const;
export type InvocationInputKey = (typeof INVOCATION_INPUT_KEYS)[number];

/** Body of `POST /serving-endpoints/{name}/invocations` after validation. */
export interface InvocationRequest {
  inputKey: InvocationInputKey;
  /** The body that goes to the model server: the request body without `client_request_id`. */
  body: Record<string, unknown>;
  /** The optional top-level `client_request_id`, recorded in the inference table and never forwarded. */
  clientRequestId?: string;
}

export type EndpointReadyState = 'READY' | 'NOT_READY';
export type ConfigUpdateState = 'NOT_UPDATING' | 'IN_PROGRESS' | 'UPDATE_FAILED';
export type DeploymentState = 'DEPLOYMENT_CREATING' | 'DEPLOYMENT_READY' | 'DEPLOYMENT_FAILED' | 'DEPLOYMENT_ABORTED';

export interface EndpointState {
  ready: EndpointReadyState;
  config_update: ConfigUpdateState;
}

export interface ServedEntityOutput extends ServedEntitySpec {
  state: { deployment: DeploymentState; deployment_state_message: string };
}

export interface EndpointConfigOutput {
  served_entities: ServedEntityOutput[];
  traffic_config: { routes: TrafficRoute[] };
  config_version: number;
}

export interface PendingConfigOutput extends EndpointConfigOutput {
  /** Time the update was accepted, in ms since the Unix epoch. */
  start_time: number;
}

/** Fields that the detailed and the summary endpoint shapes share. Timestamps are ms since the Unix epoch. */
export interface EndpointHeader {
  name: string;
  id: string;
  creator: string;
  creation_timestamp: number;
  last_updated_timestamp: number;
  state: EndpointState;
}

/** Response of GET/POST on one endpoint. */
export interface ServingEndpointDetailed extends EndpointHeader {
  /** Reason for UPDATE_FAILED or for a failed served entity of the active config, absent otherwise. */
  state_message?: string;
  config?: EndpointConfigOutput;
  pending_config?: PendingConfigOutput;
  tags: EndpointTag[];
  endpoint_url: string;
  ai_gateway?: AiGateway;
}

/** One entry of `GET /api/2.0/serving-endpoints`. */
export interface ServingEndpointSummary extends EndpointHeader {
  config?: { served_entities: Array<Pick<ServedEntitySpec, 'name' | 'entity_name' | 'entity_version'>> };
  tags: EndpointTag[];
}
