// Limits of the serving plane that the stack settings share, kept apart from the plane's modules so
// that reading the settings loads no serving code.

/**
 * Default maximum number of model servers that the endpoints may need at once. By estimate, a model
 * server of the hotel model uses about 300 MB and 5-15 s of CPU to start, so 16 fit a 2-core, 24 GiB machine.
 */
export const DEFAULT_MAX_MODEL_SERVERS = 16;
