import type { Logger } from '../common/logger';
import { invalidParameter } from './errors';
import type { ServedEntitySpec } from './types';

/** Checks served entities against the model registry before the plane starts model servers for them. */
export interface ModelVersionCheck {
  /** Throws 400 INVALID_PARAMETER_VALUE naming the first served entity whose model version does not exist. */
  assertExist(entities: ServedEntitySpec[], field: string): Promise<void>;
}

/** Time in ms to wait for the registry's response before the check is skipped. */
const CHECK_TIMEOUT_MS = 5_000;

/**
 * Looks model versions up in the MLflow registry that the model servers load from. Without this, a
 * missing version shows only after a model server has started and failed, as a Python traceback in the
 * endpoint's state. When the registry cannot be reached, the check logs a warning and lets the model
 * server start report the problem.
 */
export class MlflowModelVersionCheck implements ModelVersionCheck {
  constructor(
    private readonly trackingUri: string,
    private readonly logger: Logger,
  ) {}

  async assertExist(entities: ServedEntitySpec[], field: string): Promise<void> {
    for (const [index, entity] of entities.entries()) {
      const url = new URL('/api/2.0/mlflow/model-versions/get', this.trackingUri);
      url.searchParams.set('name', entity.entity_name);
      url.searchParams.set('version', entity.entity_version);
      let status: number;
      try {
        const response = await fetch(url, { signal: AbortSignal.timeout(CHECK_TIMEOUT_MS) });
        status = response.status;
        await response.body?.cancel();
      } catch (error) {
        this.logger.warn(
          { entityName: entity.entity_name, entityVersion: entity.entity_version, error: (error as Error).message },
          'model registry unreachable; skipped the model version check',
        );
        return;
      }
      if (status === 404) {
        throw invalidParameter(
          `Invalid ${field}[${index}]: model ${JSON.stringify(entity.entity_name)} has no version ${JSON.stringify(entity.entity_version)} ` +
            `in the registry at ${this.trackingUri}. Register the version first, or name one that exists.`,
        );
      }
      if (status !== 200) {
        this.logger.warn({ entityName: entity.entity_name, entityVersion: entity.entity_version, status }, 'model version check got an unexpected status; skipped');
      }
    }
  }
}
