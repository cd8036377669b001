// Limits of the serving plane that the stack settings share, kept apart from the plane's modules so
// that reading the settings loads no serving code.

/**
 * Default for the most model servers the endpoints may need at once. A model server of the hotel model
 * holds about 300 MB and takes 5-15 s of CPU to start, so 16 of them fit a 2-core, 24 GiB machine.
 */
export const DEFAULT_MAX_MODEL_SERVERS = 16;
