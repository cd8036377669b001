import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities } from '../activities';
import { temporalAddress, type StackSettings } from '../config/stack';

/**
 * Creates a worker that runs the pipeline workflows and the local-stack activities. `run()` resolves
 * after shutdown and closes the worker's connection.
 */
export async function createWorker(
  settings: StackSettings,
  options: { identity?: string; servingUrl?: string } = {},
): Promise<{ worker: Worker; run: () => Promise<void> }> {
  const connection = await NativeConnection.connect({ address: temporalAddress(settings) });
  const worker = await Worker.create({
    connection,
    namespace: settings.temporalNamespace,
    taskQueue: settings.taskQueue,
    workflowsPath: require.resolve('../workflows'),
    activities: createActivities(settings, options.servingUrl ? { servingUrl: options.servingUrl } : {}),
    // The SDK rejects an explicit undefined identity, so the key is only set when given.
    ...(options.identity ? { identity: options.identity } : {}),
    // Training runs in a child process, so two concurrent activities fit a 2-core machine.
    maxConcurrentActivityTaskExecutions: 4,
    // Give running activities time to finish or heartbeat their cancellation on shutdown.
    shutdownGraceTime: '10s',
  });
  const run = async (): Promise<void> => {
    try {
      await worker.run();
    } finally {
      await connection.close();
    }
  };
  return { worker, run };
}
