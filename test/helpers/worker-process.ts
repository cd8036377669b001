import { createWorker } from '../../worker/worker';
import { integrationSettings } from './stack';

// A pipeline worker in a process of its own, so a test can kill it with SIGKILL in the middle of an
// activity. TEST_TASK_QUEUE names its task queue and TEST_SERVING_URL the serving plane it deploys to.

async function main(): Promise<void> {
  const taskQueue = process.env.TEST_TASK_QUEUE;
  const servingUrl = process.env.TEST_SERVING_URL;
  if (!taskQueue || !servingUrl) throw new Error('Set TEST_TASK_QUEUE and TEST_SERVING_URL.');
  const { worker, run } = await createWorker({ ...integrationSettings(), taskQueue }, { identity: `test-worker-${process.pid}`, servingUrl });
  process.on('SIGTERM', () => worker.shutdown());
  const running = run();
  console.log('worker ready');
  await running;
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
