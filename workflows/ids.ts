/** Returns the id of a variant's child workflow; `pipeline approve` and the demo use it too. */
export function variantWorkflowId(parentWorkflowId: string, variant: string): string {
  return `${parentWorkflowId}-${variant}`;
}
