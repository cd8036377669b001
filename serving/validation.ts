import type { z } from 'zod';
import { invalidParameter, ServingError } from './errors';
import {
  aiGatewayInputSchema,
  createEndpointRequestSchema,
  endpointConfigInputSchema,
  INVOCATION_INPUT_KEYS,
  RESOURCE_NAME_PATTERN,
  UNSUPPORTED_AI_GATEWAY_FIELDS,
  type AiGateway,
  type AiGatewayInput,
  type EndpointConfigInput,
  type EndpointConfigSpec,
  type EndpointTag,
  type InvocationRequest,
  type ServedEntitySpec,
  type TrafficRoute,
} from './types';

/** A create request after validation: the config has default names and a full traffic config. */
export interface CreateEndpointInput {
  name: string;
  config: EndpointConfigSpec;
  tags: EndpointTag[];
  /** Absent when the request has no `ai_gateway`. */
  aiGateway?: AiGateway;
}

/** Maximum number of validation problems listed in one error message. */
const MAX_LISTED_ISSUES = 3;

/**
 * Validates the body of `POST /api/2.0/serving-endpoints`.
 * Throws a 400 INVALID_PARAMETER_VALUE ServingError that names the field and the rejected value.
 */
export function parseCreateEndpointRequest(body: unknown): CreateEndpointInput {
  const parsed = createEndpointRequestSchema.safeParse(body, { reportInput: true });
  if (!parsed.success) throw invalidParameter(formatIssues(parsed.error.issues));

  const tags: EndpointTag[] = [];
  const seenKeys = new Set<string>();
  for (const [index, tag] of (parsed.data.tags ?? []).entries()) {
    if (seenKeys.has(tag.key)) {
      throw invalidParameter(`Invalid tags[${index}].key ${JSON.stringify(tag.key)}: each tag key may appear only once.`);
    }
    seenKeys.add(tag.key);
    tags.push(tag.value == null ? { key: tag.key } : { key: tag.key, value: tag.value });
  }

  const input: CreateEndpointInput = { name: parsed.data.name, config: normalizeConfig(parsed.data.config, 'config.'), tags };
  if (parsed.data.ai_gateway != null) input.aiGateway = normalizeAiGateway(parsed.data.ai_gateway, 'ai_gateway.', parsed.data.name);
  return input;
}

/**
 * Validates the body of `PUT /api/2.0/serving-endpoints/{name}/ai-gateway`, which replaces the whole
 * AI gateway config of the endpoint. Throws a 400 INVALID_PARAMETER_VALUE ServingError.
 */
export function parseAiGatewayRequest(body: unknown, endpointName: string): AiGateway {
  const parsed = aiGatewayInputSchema.safeParse(body, { reportInput: true });
  if (!parsed.success) throw invalidParameter(formatIssues(parsed.error.issues));
  return normalizeAiGateway(parsed.data, '', endpointName);
}

/**
 * Fills in the defaults of an AI gateway config: `enabled` is false when missing, like an unset
 * boolean of the Databricks API, and `table_name_prefix` is the endpoint name, like the default of
 * Databricks' `auto_capture_config`. An enabled inference table needs a catalog and a schema.
 */
function normalizeAiGateway(input: AiGatewayInput, prefix: string, endpointName: string): AiGateway {
  for (const field of UNSUPPORTED_AI_GATEWAY_FIELDS) {
    if (input[field] != null) {
      throw invalidParameter(
        `Unsupported ${prefix}${field}: the local serving plane implements only ${prefix}inference_table_config. Remove ${field} from the request.`,
      );
    }
  }

  const table = input.inference_table_config;
  if (table == null) return {};
  const enabled = table.enabled ?? false;
  const field = `${prefix}inference_table_config`;
  if (enabled && (table.catalog_name == null || table.schema_name == null)) {
    const missing = table.catalog_name == null ? 'catalog_name' : 'schema_name';
    throw invalidParameter(
      `Missing ${field}.${missing}: an enabled inference table needs catalog_name and schema_name. Set both, or set enabled to false.`,
    );
  }

  const config: AiGateway['inference_table_config'] = { enabled };
  if (table.catalog_name != null) config.catalog_name = table.catalog_name;
  if (table.schema_name != null) config.schema_name = table.schema_name;
  const tablePrefix = table.table_name_prefix ?? (enabled ? endpointName : undefined);
  if (tablePrefix != null) config.table_name_prefix = tablePrefix;
  return { inference_table_config: config };
}

/**
 * Validates the body of `PUT /api/2.0/serving-endpoints/{name}/config`, a full replacement config.
 * Throws a 400 INVALID_PARAMETER_VALUE ServingError that names the field and the rejected value.
 */
export function parseUpdateConfigRequest(body: unknown): EndpointConfigSpec {
  const parsed = endpointConfigInputSchema.safeParse(body, { reportInput: true });
  if (!parsed.success) throw invalidParameter(formatIssues(parsed.error.issues));
  return normalizeConfig(parsed.data, '');
}

/**
 * Returns the served entity name used when a request gives none: the last dot-separated part of the
 * registered model name, a dash and the version (`main.ml.hotel_model` version 3 gives `hotel_model-3`).
 */
export function defaultServedEntityName(entityName: string, entityVersion: string): string {
  const parts = entityName.split('.');
  return `${parts[parts.length - 1]}-${entityVersion}`;
}

/**
 * Fills in default served entity names and the traffic config, then checks what the schema cannot:
 * unique names and routes that reference served entities and sum to 100 percent.
 * `prefix` is the path of the config inside the request body, used in error messages.
 */
function normalizeConfig(input: EndpointConfigInput, prefix: string): EndpointConfigSpec {
  const entities: ServedEntitySpec[] = [];
  const names = new Set<string>();

  for (const [index, entity] of input.served_entities.entries()) {
    const field = `${prefix}served_entities[${index}].name`;
    const name = entity.name ?? defaultServedEntityName(entity.entity_name, entity.entity_version);
    if (entity.name == null && !RESOURCE_NAME_PATTERN.test(name)) {
      throw invalidParameter(
        `Invalid default ${field} ${JSON.stringify(name)} derived from entity_name and entity_version: names must match ${RESOURCE_NAME_PATTERN}. Set ${field} explicitly.`,
      );
    }
    if (names.has(name)) {
      throw invalidParameter(
        `Invalid ${field} ${JSON.stringify(name)}: another served entity of this config has the same name. Give each served entity a unique name.`,
      );
    }
    names.add(name);
    entities.push({
      name,
      entity_name: entity.entity_name,
      entity_version: entity.entity_version,
      workload_size: entity.workload_size,
      scale_to_zero_enabled: entity.scale_to_zero_enabled,
    });
  }

  return { served_entities: entities, routes: normalizeRoutes(input, entities, prefix) };
}

function normalizeRoutes(input: EndpointConfigInput, entities: ServedEntitySpec[], prefix: string): TrafficRoute[] {
  const field = `${prefix}traffic_config.routes`;

  if (input.traffic_config == null) {
    if (entities.length === 1) return [{ served_entity_name: entities[0].name, traffic_percentage: 100 }];
    throw invalidParameter(
      `Missing ${prefix}traffic_config: it is required when ${prefix}served_entities lists ${entities.length} served entities. Add routes that split 100 percent of the traffic between them.`,
    );
  }

  const known = new Set(entities.map((entity) => entity.name));
  const routed = new Set<string>();
  let total = 0;
  for (const [index, route] of input.traffic_config.routes.entries()) {
    const name = route.served_entity_name;
    if (!known.has(name)) {
      throw invalidParameter(
        `Invalid ${field}[${index}].served_entity_name ${JSON.stringify(name)}: no served entity of this config has that name. Known names: ${[...known].join(', ')}.`,
      );
    }
    if (routed.has(name)) {
      throw invalidParameter(
        `Invalid ${field}[${index}].served_entity_name ${JSON.stringify(name)}: another route already sends traffic to it. Use one route per served entity.`,
      );
    }
    routed.add(name);
    total += route.traffic_percentage;
  }
  if (total !== 100) {
    throw invalidParameter(
      `Invalid ${field}: traffic_percentage values sum to ${total}, but they must sum to 100.`,
    );
  }

  return input.traffic_config.routes.map((route) => ({ ...route }));
}

/**
 * Validates an invocation body: a JSON object with exactly one of the MLflow input keys and
 * optionally `params`. Throws a 400 BAD_REQUEST ServingError otherwise.
 */
export function parseInvocationRequest(body: unknown): InvocationRequest {
  const accepted = INVOCATION_INPUT_KEYS.join(', ');
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ServingError(
      'BAD_REQUEST',
      `Invalid invocation body: expected a JSON object with exactly one of ${accepted}, got ${describeJsonType(body)}.`,
    );
  }

  const record = body as Record<string, unknown>;
  const inputKeys = INVOCATION_INPUT_KEYS.filter((key) => key in record);
  if (inputKeys.length !== 1) {
    const found = inputKeys.length === 0 ? 'none of them' : inputKeys.join(' and ');
    throw new ServingError(
      'BAD_REQUEST',
      `Invalid invocation body: it must contain exactly one of ${accepted}, but it contains ${found}.`,
    );
  }

  const unknownKeys = Object.keys(record).filter(
    (key) => key !== inputKeys[0] && key !== 'params' && key !== 'client_request_id',
  );
  if (unknownKeys.length > 0) {
    throw new ServingError(
      'BAD_REQUEST',
      `Invalid invocation body: unexpected field(s) ${unknownKeys.join(', ')}. Besides ${inputKeys[0]}, only params and client_request_id are allowed.`,
    );
  }

  if (!('client_request_id' in record)) return { inputKey: inputKeys[0], body: record };

  // MLflow's scoring server rejects unknown fields, so the id is recorded here and not forwarded.
  const { client_request_id: clientRequestId, ...forwarded } = record;
  if (typeof clientRequestId !== 'string') {
    throw new ServingError(
      'BAD_REQUEST',
      `Invalid invocation body: client_request_id must be a string, got ${describeJsonType(clientRequestId)}.`,
    );
  }
  return { inputKey: inputKeys[0], body: forwarded, clientRequestId };
}

/**
 * Returns the number of input records in an invocation, so that logs can show request size without
 * showing the data. Returns undefined when the input has no row structure, such as a scalar.
 */
export function countInvocationRecords(request: InvocationRequest): number | undefined {
  const input = request.body[request.inputKey];
  if (Array.isArray(input)) return input.length;
  if (typeof input !== 'object' || input === null) return undefined;

  // dataframe_split has its rows in `data`. Column-oriented `inputs` map each column to its values.
  const object = input as Record<string, unknown>;
  if (Array.isArray(object.data)) return object.data.length;
  const firstColumn = Object.values(object)[0];
  return Array.isArray(firstColumn) ? firstColumn.length : undefined;
}

function describeJsonType(value: unknown): string {
  if (value === undefined) return 'an empty body';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let text = '';
  for (const part of path) {
    if (typeof part === 'number') text += `[${part}]`;
    else text += text === '' ? String(part) : `.${String(part)}`;
  }
  return text === '' ? 'request body' : text;
}

/** Turns zod issues into one message that names each field, the rejected value and the rule. */
function formatIssues(issues: z.core.$ZodIssue[]): string {
  const sentences = issues.slice(0, MAX_LISTED_ISSUES).map((issue) => {
    const field = formatPath(issue.path);
    if (issue.code === 'invalid_type' && issue.input === undefined) {
      return `Missing required field ${field} (expected ${issue.expected}).`;
    }
    const rule = issue.code === 'invalid_type' ? `expected ${issue.expected}` : issue.message;
    return `Invalid ${field} ${truncatedJson(issue.input)}: ${rule}.`;
  });
  if (issues.length > MAX_LISTED_ISSUES) {
    sentences.push(`${issues.length - MAX_LISTED_ISSUES} more problem(s) not listed.`);
  }
  return sentences.join(' ');
}

/** JSON text of a rejected value, cut to 100 characters so that a large body cannot flood a message. */
function truncatedJson(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 100 ? `${text.slice(0, 100)}...` : text;
}
