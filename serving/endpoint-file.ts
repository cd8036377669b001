import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { RESOURCE_NAME_PATTERN, TABLE_PART_PATTERN, WORKLOAD_SIZES } from './types';

/**
 * The endpoint definitions file, `<stateDir>/serving/endpoints.json`. It stores what is needed to
 * bring endpoints back after a restart: names, ids, timestamps, tags, the AI gateway settings and the
 * active config. A config update in progress is stored as `pending_config` only so that a restart can
 * report it as failed.
 */

const FORMAT_VERSION = 1;

const servedEntitySchema = z.object({
  name: z.string().regex(RESOURCE_NAME_PATTERN),
  entity_name: z.string().min(1),
  entity_version: z.string().regex(/^[1-9][0-9]*$/),
  workload_size: z.enum(WORKLOAD_SIZES),
  scale_to_zero_enabled: z.boolean(),
});

const storedConfigSchema = z.object({
  served_entities: z.array(servedEntitySchema).min(1),
  traffic_config: z.object({
    routes: z.array(z.object({ served_entity_name: z.string(), traffic_percentage: z.number().int() })),
  }),
  config_version: z.number().int().positive(),
});

// Files written before inference tables existed have no `ai_gateway`, so it stays optional.
const storedAiGatewaySchema = z.object({
  inference_table_config: z
    .object({
      catalog_name: z.string().regex(TABLE_PART_PATTERN).optional(),
      schema_name: z.string().regex(TABLE_PART_PATTERN).optional(),
      table_name_prefix: z.string().regex(TABLE_PART_PATTERN).optional(),
      enabled: z.boolean(),
    })
    .optional(),
});

const storedEndpointSchema = z.object({
  name: z.string().regex(RESOURCE_NAME_PATTERN),
  id: z.string().min(1),
  creator: z.string(),
  creation_timestamp: z.number().int(),
  last_updated_timestamp: z.number().int(),
  tags: z.array(z.object({ key: z.string(), value: z.string().optional() })),
  config: storedConfigSchema,
  pending_config: storedConfigSchema.extend({ start_time: z.number().int() }).optional(),
  ai_gateway: storedAiGatewaySchema.optional(),
});

const endpointFileSchema = z.object({
  format_version: z.literal(FORMAT_VERSION),
  endpoints: z.array(storedEndpointSchema),
});

export type StoredEndpoint = z.output<typeof storedEndpointSchema>;
export type StoredConfig = z.output<typeof storedConfigSchema>;

/** Returns the stored endpoints, or an empty list if the file does not exist yet. */
export function readEndpointFile(file: string): StoredEndpoint[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }

  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new Error(
      `Invalid endpoint file ${file}: it is not valid JSON (${(error as Error).message}). Fix it or move it away to start without endpoints.`,
    );
  }

  const parsed = endpointFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(
      `Invalid endpoint file ${file}: ${issue.path.join('.') || 'top level'}: ${issue.message}. Fix it or move it away to start without endpoints.`,
    );
  }
  return parsed.data.endpoints;
}

/**
 * Replaces the file atomically: the content goes to a temporary file in the same folder, which is
 * then renamed over the old file, so a crash leaves either the old or the new content.
 */
export function writeEndpointFile(file: string, endpoints: StoredEndpoint[]): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const content = `${JSON.stringify({ format_version: FORMAT_VERSION, endpoints }, null, 2)}\n`;
  const temporary = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(temporary, 'w');
  try {
    fs.writeFileSync(fd, content);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temporary, file);
}
