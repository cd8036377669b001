/** Prints launcher progress to stderr, so stdout stays free for results. */
export function progress(message: string): void {
  process.stderr.write(`[stack] ${message}\n`);
}

/** Seconds since `startedMs`, with one decimal. */
export function elapsed(startedMs: number): string {
  return `${((Date.now() - startedMs) / 1000).toFixed(1)} s`;
}
