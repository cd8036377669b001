// Limits of the serving plane that the stack settings share, kept apart from the plane's modules so
// that reading the settings loads no serving code.

/**
 * Default maximum number of model servers that the endpoints may need at once. A model server of the
 * hotel model with one worker uses about 530 MiB (bench/serving-latency.ts) and takes 10 s to start on
 * 2 cores, so 16 fit in 24 GiB next to the rest of the stack.
 */
export const DEFAULT_MAX_MODEL_SERVERS = 16;
