import { createLogger } from '../common/logger';
import { catalogDir, mlflowUrl, stackSettings, type StackSettings } from '../config/stack';
import { createServingPlane, type ServingPlane } from './server';

/**
 * Entry point of the local serving plane: serves the Databricks Model Serving REST API on
 * 127.0.0.1:MLOPS_SERVING_PORT (default 8080) and loads models from the stack's MLflow server.
 * SIGINT or SIGTERM stops every model server, then the process exits with 0.
 */
async function main(): Promise<void> {
  const logger = createLogger('serving-plane');
  let settings: StackSettings;
  try {
    settings = stackSettings();
  } catch (error) {
    logger.fatal({ error: (error as Error).message }, 'invalid serving plane settings');
    process.exit(1);
  }

  let plane: ServingPlane;
  try {
    plane = createServingPlane({
      host: settings.host,
      port: settings.servingPort,
      stateDir: settings.stateDir,
      trackingUri: mlflowUrl(settings),
      logger,
      scaleToZeroIdleMs: settings.servingScaleToZeroIdleSeconds * 1000,
      maxModelServers: settings.servingMaxModelServers,
      catalogRoot: catalogDir(settings),
      payloadFlushIntervalMs: settings.servingPayloadFlushSeconds * 1000,
    });
    await plane.listen();
  } catch (error) {
    logger.fatal({ error: (error as Error).message, port: settings.servingPort }, 'serving plane failed to start');
    process.exit(1);
  }

  let stopping = false;
  const shutdown = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, 'second shutdown signal received, exiting without waiting for model servers');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down serving plane');
    plane.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ error: (error as Error).message }, 'serving plane shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}

void main();
