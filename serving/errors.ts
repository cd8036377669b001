/**
 * Error codes of the Databricks REST API that the serving plane returns, with the HTTP status of
 * each. Clients branch on `error_code`, so the strings are a stable contract.
 */
export const ERROR_STATUS = {
  INVALID_PARAMETER_VALUE: 400,
  BAD_REQUEST: 400,
  RESOURCE_DOES_NOT_EXIST: 404,
  ENDPOINT_NOT_FOUND: 404,
  RESOURCE_ALREADY_EXISTS: 409,
  RESOURCE_CONFLICT: 409,
  RESOURCE_EXHAUSTED: 429,
  INTERNAL_ERROR: 500,
  TEMPORARILY_UNAVAILABLE: 503,
  DEADLINE_EXCEEDED: 504,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** Maximum request body in bytes. Invocations with large dataframes need more than Fastify's 1 MiB default. */
export const BODY_LIMIT_BYTES = 16 * 2 ** 20;

/** JSON body of every error response: `{"error_code": "...", "message": "..."}`. */
export interface ErrorBody {
  error_code: ErrorCode;
  message: string;
}

/** An error that the HTTP layer sends to the client as-is, with the status that belongs to its code. */
export class ServingError extends Error {
  readonly statusCode: number;

  constructor(
    readonly errorCode: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ServingError';
    this.statusCode = ERROR_STATUS[errorCode];
  }

  toBody(): ErrorBody {
    return { error_code: this.errorCode, message: this.message };
  }
}

export function invalidParameter(message: string): ServingError {
  return new ServingError('INVALID_PARAMETER_VALUE', message);
}

export function endpointNotFound(name: string): ServingError {
  return new ServingError(
    'RESOURCE_DOES_NOT_EXIST',
    `Serving endpoint ${JSON.stringify(name)} does not exist. List the existing endpoints with GET /api/2.0/serving-endpoints.`,
  );
}

/**
 * Returns the status and Databricks JSON body for any error that a route throws: a ServingError as
 * it is, a 4xx rejection of Fastify's (invalid JSON, unsupported content type, body too large) as
 * BAD_REQUEST, anything else as 500 INTERNAL_ERROR. `route` names the request in the 500 message.
 */
export function toErrorResponse(error: unknown, route: string): { status: number; body: ErrorBody } {
  if (error instanceof ServingError) return { status: error.statusCode, body: error.toBody() };
  const message = error instanceof Error ? error.message : String(error);
  const statusCode = (error as { statusCode?: unknown } | null)?.statusCode;
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    const message = `Invalid request: the body is larger than the limit of ${BODY_LIMIT_BYTES / 2 ** 20} MiB. Send fewer records per request.`;
    return { status: 413, body: { error_code: 'BAD_REQUEST', message } };
  }
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    const message = `Invalid request: unsupported Content-Type. Send the body as JSON with Content-Type: application/json.`;
    return { status: 415, body: { error_code: 'BAD_REQUEST', message } };
  }
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
    return { status: statusCode, body: { error_code: 'BAD_REQUEST', message: `Invalid request: ${message}` } };
  }
  return { status: 500, body: { error_code: 'INTERNAL_ERROR', message: `Internal error while handling ${route}: ${message}` } };
}
