import path from 'node:path';
import { REPO_ROOT } from '../../common/paths';
import { stackSettings, type StackSettings } from '../../config/stack';

/**
 * Settings of the stack the integration tests start: its own ports and state folder, so tests never
 * touch a demo stack running on the default ports.
 */
export function integrationSettings(): StackSettings {
  return stackSettings({
    MLOPS_STATE_DIR: path.join(REPO_ROOT, '.mlops-test'),
    MLOPS_TEMPORAL_PORT: '17233',
    MLOPS_TEMPORAL_UI_PORT: '18233',
    MLOPS_MLFLOW_PORT: '15000',
    MLOPS_SERVING_PORT: '18080',
    MLOPS_TASK_QUEUE: 'mlops-integration-test',
  });
}
