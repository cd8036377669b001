/**
 * Faults that tests inject into a serving plane through the `faults` plane option. No HTTP route
 * reaches this object, so a running stack cannot be switched into a faulty mode from outside.
 */
export class ServingFaults {
  /** Remaining injected conflicts per endpoint name. Infinity rejects every update until clear(). */
  private readonly configUpdateRejections = new Map<string, number>();

  /**
   * Makes the next `count` config updates (PUT .../config) of `endpoint` fail with 409
   * RESOURCE_CONFLICT, as if another update were in progress. A later call replaces the count.
   */
  rejectConfigUpdates(endpoint: string, count: number): void {
    if (!(count === Infinity || (Number.isInteger(count) && count >= 0))) {
      throw new RangeError(`Invalid count ${count} of injected config update conflicts: expected a whole number >= 0 or Infinity.`);
    }
    if (count === 0) this.configUpdateRejections.delete(endpoint);
    else this.configUpdateRejections.set(endpoint, count);
  }

  /** Removes every injected fault. */
  clear(): void {
    this.configUpdateRejections.clear();
  }

  /**
   * Uses up one injected conflict of `endpoint`. Returns the number of conflicts left after this one,
   * or undefined when no conflict is injected and the update should proceed.
   */
  takeConfigUpdateRejection(endpoint: string): number | undefined {
    const remaining = this.configUpdateRejections.get(endpoint);
    if (remaining === undefined) return undefined;
    const left = remaining - 1;
    if (left <= 0) this.configUpdateRejections.delete(endpoint);
    else this.configUpdateRejections.set(endpoint, left);
    return Math.max(left, 0);
  }
}
