import axios, { type AxiosInstance } from 'axios';
import { apiError } from '../http-errors';

export interface ModelVersion {
  name: string;
  version: string;
  run_id?: string;
  source?: string;
  status?: string;
  status_message?: string;
  aliases?: string[];
  tags?: { key: string; value: string }[];
}

/**
 * Model registry client over the MLflow REST API (`/api/2.0/mlflow`). It works against the
 * open-source MLflow server and, with a bearer token, the Databricks workspace registry.
 */
export class MlflowRegistry {
  private readonly http: AxiosInstance;

  constructor(readonly trackingUri: string, options: { token?: string; timeoutMs?: number } = {}) {
    this.http = axios.create({
      baseURL: `${trackingUri.replace(/\/$/, '')}/api/2.0/mlflow`,
      timeout: options.timeoutMs ?? 30_000,
      headers: options.token ? { Authorization: `Bearer ${options.token}` } : {},
    });
  }

  /** Creates the registered model unless it exists, in which case MLflow returns RESOURCE_ALREADY_EXISTS. */
  async ensureRegisteredModel(name: string, tags: Record<string, string> = {}): Promise<void> {
    try {
      await this.http.post('/registered-models/create', { name, tags: toTagList(tags) });
    } catch (error) {
      if (apiError(error).code !== 'RESOURCE_ALREADY_EXISTS') throw error;
    }
  }

  /** Returns the versions of `name` created from `runId`, oldest first. */
  async findVersionsByRun(name: string, runId: string): Promise<ModelVersion[]> {
    const filter = `name='${name.replace(/'/g, "\\'")}' and run_id='${runId}'`;
    const { data } = await this.http.get('/model-versions/search', { params: { filter, max_results: 100 } });
    const versions = (data.model_versions ?? []) as ModelVersion[];
    return versions.sort((a, b) => Number(a.version) - Number(b.version));
  }

  async createVersion(input: {
    name: string;
    source: string;
    runId: string;
    modelId?: string;
    tags?: Record<string, string>;
  }): Promise<ModelVersion> {
    const { data } = await this.http.post('/model-versions/create', {
      name: input.name,
      source: input.source,
      run_id: input.runId,
      model_id: input.modelId,
      tags: toTagList(input.tags ?? {}),
    });
    return data.model_version as ModelVersion;
  }

  async getVersion(name: string, version: string): Promise<ModelVersion> {
    const { data } = await this.http.get('/model-versions/get', { params: { name, version } });
    return data.model_version as ModelVersion;
  }

  async setAlias(name: string, alias: string, version: string): Promise<void> {
    await this.http.post('/registered-models/alias', { name, alias, version });
  }

  /** Sets tags on a model version, one request per tag as the REST API takes them. */
  async setVersionTags(name: string, version: string, tags: Record<string, string>): Promise<void> {
    for (const [key, value] of Object.entries(tags)) {
      await this.http.post('/model-versions/set-tag', { name, version, key, value });
    }
  }

  /** Returns the version an alias points at, or undefined when the alias is not set. */
  async getVersionByAlias(name: string, alias: string): Promise<ModelVersion | undefined> {
    try {
      const { data } = await this.http.get('/registered-models/alias', { params: { name, alias } });
      return data.model_version as ModelVersion;
    } catch (error) {
      const { status, code } = apiError(error);
      // OSS MLflow returns 400 INVALID_PARAMETER_VALUE for a missing alias, Databricks returns 404.
      if (status === 404 || code === 'RESOURCE_DOES_NOT_EXIST' || code === 'INVALID_PARAMETER_VALUE') return undefined;
      throw error;
    }
  }
}

function toTagList(tags: Record<string, string>): { key: string; value: string }[] {
  return Object.entries(tags).map(([key, value]) => ({ key, value }));
}
