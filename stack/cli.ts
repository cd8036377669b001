import { Command } from 'commander';
import { stackSettings } from '../config/stack';
import { startStack, stopServicesStartedHere, stopStack } from './launcher';
import { provision } from './provision';
import { mlflowService, servingService, temporalService } from './services';

const program = new Command('stack').description('Install, start and stop the embedded local stack');

program
  .command('provision')
  .description('Install the Temporal CLI and the Python environment if missing')
  .action(async () => {
    const { temporalCli } = await provision();
    console.log(`Temporal CLI: ${temporalCli}`);
  });

program
  .command('up')
  .description('Start Temporal, MLflow and the serving plane in the background (already running ones are kept)')
  .action(async () => {
    const settings = stackSettings();
    let stopping = false;
    process.on('SIGINT', () => {
      if (stopping) return;
      stopping = true;
      console.error('\nCtrl-C: stopping the services started so far...');
      stopServicesStartedHere(settings).finally(() => process.exit(130));
    });
    const handle = await startStack(settings);
    console.log(`Stack running; started now: ${handle.started.join(', ') || 'nothing'}. Stop it with npm run stack:down.`);
  });

program
  .command('down')
  .description('Stop the services that a launcher started')
  .action(async () => {
    await stopStack(stackSettings());
  });

program
  .command('status')
  .description('Show which services answer their health check')
  .action(async () => {
    const settings = stackSettings();
    for (const service of [temporalService(settings, 'temporal'), mlflowService(settings), servingService(settings)]) {
      const state = (await service.healthy()) ? 'healthy' : 'not running';
      console.log(`${service.name.padEnd(8)} ${state.padEnd(12)} ${service.describe()}`);
    }
  });

program.parseAsync().catch((error: Error) => {
  console.error(`stack: ${error.message}`);
  process.exit(1);
});
