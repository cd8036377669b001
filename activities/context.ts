import { activityInfo } from '@temporalio/activity';

/** Returns the ids of the workflow run that scheduled the current activity. */
export function workflowIds(): { workflowId: string; runId: string } {
  const execution = activityInfo().workflowExecution;
  if (!execution) {
    throw new Error('This activity needs a workflow context: it derives idempotency keys from the workflow id.');
  }
  return { workflowId: execution.workflowId, runId: execution.runId };
}
