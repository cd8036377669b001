import { createLogger } from '../common/logger';
import { mlflowUrl, stackSettings } from '../config/stack';
import { createServingPlane, type ServingPlane } from './server';

/**
 * Entry point of the local serving plane: serves the Databricks Model Serving REST API on
 * 127.0.0.1:MLOPS_SERVING_PORT (default 8080) and loads models from the stack's MLflow server.
 * SIGINT or SIGTERM stops every model server, then the process exits with 0.
 */
async function main(): Promise<void> {
  const settings = stackSettings();
  const logger = createLogger('serving-plane');

  let plane: ServingPlane;
  try {
    plane = createServingPlane({
      host: settings.host,
      port: settings.servingPort,
      stateDir: settings.stateDir,
      trackingUri: mlflowUrl(settings),
      logger,
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
