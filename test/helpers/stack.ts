import path from 'node:path';
import { REPO_ROOT } from '../../common/paths';
import { stackSettings, type StackSettings } from '../../config/stack';

/**
 * Returns the settings of the stack the integration tests start: its own ports and state folder, so
 * tests never touch a demo stack on the default ports. MLOPS_TEST_PORT_OFFSET shifts every port, so two
 * checkouts can run their tests at the same time.
 */
export function integrationSettings(): StackSettings {
  const offset = Number(process.env.MLOPS_TEST_PORT_OFFSET ?? 0);
  if (!Number.isInteger(offset) || offset < 0 || offset > 40000) {
    throw new Error(`Invalid MLOPS_TEST_PORT_OFFSET=${process.env.MLOPS_TEST_PORT_OFFSET}: expected an integer 0-40000.`);
  }
  return stackSettings({
    // A separate state folder per offset, so parallel runs in one checkout never share files.
    MLOPS_STATE_DIR: path.join(REPO_ROOT, offset === 0 ? '.mlops-test' : `.mlops-test-${offset}`),
    MLOPS_TEMPORAL_PORT: String(17233 + offset),
    MLOPS_TEMPORAL_UI_PORT: String(18233 + offset),
    MLOPS_MLFLOW_PORT: String(15000 + offset),
    MLOPS_SERVING_PORT: String(18080 + offset),
    MLOPS_TASK_QUEUE: 'mlops-integration-test',
  });
}
