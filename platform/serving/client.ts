import axios, { type AxiosInstance } from 'axios';
import { apiError } from '../http-errors';

export interface ServedEntityInput {
  name?: string;
  entity_name: string;
  entity_version: string;
  workload_size: 'Small' | 'Medium' | 'Large';
  scale_to_zero_enabled: boolean;
}

export interface TrafficConfig {
  routes: { served_entity_name: string; traffic_percentage: number }[];
}

export interface EndpointCoreConfig {
  served_entities: ServedEntityInput[];
  traffic_config?: TrafficConfig;
}

/** Inference table settings of an endpoint's AI gateway: requests go to `<catalog>.<schema>.<prefix>_payload`. */
export interface InferenceTableConfig {
  catalog_name: string;
  schema_name: string;
  table_name_prefix: string;
  enabled: boolean;
}

export interface ServedEntityOutput extends ServedEntityInput {
  name: string;
  state?: { deployment?: string; deployment_state_message?: string };
}

/** The fields of Databricks' ServingEndpointDetailed that the control plane reads. */
export interface ServingEndpoint {
  name: string;
  id?: string;
  state: { ready: 'READY' | 'NOT_READY'; config_update: 'NOT_UPDATING' | 'IN_PROGRESS' | 'UPDATE_FAILED' | 'UPDATE_CANCELED' };
  config?: { served_entities: ServedEntityOutput[]; traffic_config?: TrafficConfig; config_version?: number };
  pending_config?: {
    served_entities: ServedEntityOutput[];
    traffic_config?: TrafficConfig;
    config_version?: number;
    start_time?: number;
  };
  ai_gateway?: { inference_table_config?: InferenceTableConfig };
  state_message?: string;
}

export interface QueryResult {
  status: number;
  body: unknown;
  servedModel?: string;
  latencyMs: number;
}

/**
 * Client of the Databricks serving-endpoints REST API. The same client talks to a Databricks workspace
 * (with a bearer token read on the worker host) and to the local serving plane.
 */
export class ServingClient {
  private readonly http: AxiosInstance;

  constructor(readonly baseUrl: string, options: { token?: string; timeoutMs?: number } = {}) {
    this.http = axios.create({
      baseURL: baseUrl.replace(/\/$/, ''),
      timeout: options.timeoutMs ?? 60_000,
      headers: options.token ? { Authorization: `Bearer ${options.token}` } : {},
    });
  }

  /** Returns the endpoint, or undefined when no endpoint has this name. */
  async get(name: string): Promise<ServingEndpoint | undefined> {
    try {
      const { data } = await this.http.get(`/api/2.0/serving-endpoints/${encodeURIComponent(name)}`);
      return data as ServingEndpoint;
    } catch (error) {
      if (apiError(error).status === 404) return undefined;
      throw error;
    }
  }

  /** Lists every endpoint in the summary shape. */
  async list(): Promise<ServingEndpoint[]> {
    const { data } = await this.http.get('/api/2.0/serving-endpoints');
    return ((data as { endpoints?: ServingEndpoint[] }).endpoints ?? []);
  }

  async create(name: string, config: EndpointCoreConfig, inferenceTable?: InferenceTableConfig): Promise<ServingEndpoint> {
    const body = { name, config, ...(inferenceTable ? { ai_gateway: { inference_table_config: inferenceTable } } : {}) };
    const { data } = await this.http.post('/api/2.0/serving-endpoints', body);
    return data as ServingEndpoint;
  }

  async putInferenceTable(name: string, inferenceTable: InferenceTableConfig): Promise<void> {
    await this.http.put(`/api/2.0/serving-endpoints/${encodeURIComponent(name)}/ai-gateway`, {
      inference_table_config: inferenceTable,
    });
  }

  /** Returns the endpoint's metrics in the Prometheus text format. */
  async metrics(name: string): Promise<string> {
    const { data } = await this.http.get(`/api/2.0/serving-endpoints/${encodeURIComponent(name)}/metrics`, {
      responseType: 'text',
      transformResponse: (body: unknown) => body,
    });
    return String(data);
  }

  async updateConfig(name: string, config: EndpointCoreConfig): Promise<ServingEndpoint> {
    const { data } = await this.http.put(`/api/2.0/serving-endpoints/${encodeURIComponent(name)}/config`, config);
    return data as ServingEndpoint;
  }

  /** Deletes the endpoint; returns false when it did not exist. */
  async delete(name: string): Promise<boolean> {
    try {
      await this.http.delete(`/api/2.0/serving-endpoints/${encodeURIComponent(name)}`);
      return true;
    } catch (error) {
      if (apiError(error).status === 404) return false;
      throw error;
    }
  }

  invocationsUrl(name: string): string {
    return `${this.http.defaults.baseURL}/serving-endpoints/${encodeURIComponent(name)}/invocations`;
  }

  /**
   * Sends one scoring request and returns the response whatever its status. With `servedEntity`, the
   * request goes to that served entity whatever the traffic routes say.
   */
  async query(name: string, body: Record<string, unknown>, servedEntity?: string): Promise<QueryResult> {
    const started = performance.now();
    const entityPath = servedEntity ? `/served-models/${encodeURIComponent(servedEntity)}` : '';
    const response = await this.http.post(`/serving-endpoints/${encodeURIComponent(name)}${entityPath}/invocations`, body, {
      validateStatus: () => true,
    });
    const servedModel = response.headers['served-model-name'];
    return {
      status: response.status,
      body: response.data,
      servedModel: typeof servedModel === 'string' ? servedModel : undefined,
      latencyMs: Math.round((performance.now() - started) * 10) / 10,
    };
  }
}
