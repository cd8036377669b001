import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities } from '../activities';
import { temporalAddress, type StackSettings } from '../config/stack';

/** Creates a worker that runs the pipeline workflows and the local-stack activities. */
export async function createWorker(settings: StackSettings, options: { identity?: string } = {}): Promise<Worker> {
  const connection = await NativeConnection.connect({ address: temporalAddress(settings) });
  return Worker.create({
    connection,
    namespace: settings.temporalNamespace,
    taskQueue: settings.taskQueue,
    workflowsPath: require.resolve('../workflows'),
    activities: createActivities(settings),
    identity: options.identity,
    // Training runs in a child process, so two concurrent activities fit a 2-core machine.
    maxConcurrentActivityTaskExecutions: 4,
    // Give running activities time to finish or heartbeat their cancellation on shutdown.
    shutdownGraceTime: '10s',
  });
}
