import { createLogger } from '../common/logger';
import { stackSettings, temporalAddress } from '../config/stack';
import { installTemporalLogging } from './logging';
import { createWorker } from './worker';

async function run(): Promise<void> {
  const logger = createLogger('worker');
  installTemporalLogging(logger);
  const settings = stackSettings();
  const { run: runWorker } = await createWorker(settings);
  logger.info({ address: temporalAddress(settings), taskQueue: settings.taskQueue }, 'Worker started');
  await runWorker();
  logger.info('Worker stopped');
}

run().catch((error) => {
  console.error(error);
  process.exit(1);
});
