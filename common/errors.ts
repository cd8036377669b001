import { ApplicationFailure } from '@temporalio/common';

/**
 * Failure types shared by activities and workflows. Workflows branch on these names and retry
 * policies list the non-retryable ones, so they are a stable contract.
 */
export const FailureType = {
  /** Input data or a request argument is wrong; retrying cannot help. */
  InvalidInput: 'InvalidInput',
  /** Project configuration is wrong; retrying cannot help. */
  InvalidConfig: 'InvalidConfig',
  /** A named resource does not exist. */
  NotFound: 'NotFound',
  /** The caller may not do this. */
  PermissionDenied: 'PermissionDenied',
  /** A serving endpoint is applying another config update (HTTP 409 RESOURCE_CONFLICT). */
  EndpointBusy: 'EndpointBusy',
  /** A serving endpoint could not apply a config (UPDATE_FAILED) or did not become ready in time. */
  EndpointUpdateFailed: 'EndpointUpdateFailed',
  /** A training or logging job exited with an error. */
  JobFailed: 'JobFailed',
  /** The endpoint returned a wrong response to the smoke test. */
  SmokeTestFailed: 'SmokeTestFailed',
  /** A network error, a timeout or a 5xx response, so another attempt may succeed. */
  Transient: 'Transient',
} as const;

export type FailureTypeName = (typeof FailureType)[keyof typeof FailureType];

/** Failure types that no retry policy should retry. */
export const NON_RETRYABLE_FAILURE_TYPES: string[] = [
  FailureType.InvalidInput,
  FailureType.InvalidConfig,
  FailureType.NotFound,
  FailureType.PermissionDenied,
  FailureType.SmokeTestFailed,
];

export function invalidInput(message: string, details?: unknown): ApplicationFailure {
  return ApplicationFailure.create({ message, type: FailureType.InvalidInput, nonRetryable: true, details: [details] });
}

export function invalidConfig(message: string): ApplicationFailure {
  return ApplicationFailure.create({ message, type: FailureType.InvalidConfig, nonRetryable: true });
}

export function notFound(message: string): ApplicationFailure {
  return ApplicationFailure.create({ message, type: FailureType.NotFound, nonRetryable: true });
}

export function permissionDenied(message: string): ApplicationFailure {
  return ApplicationFailure.create({ message, type: FailureType.PermissionDenied, nonRetryable: true });
}

export function endpointBusy(message: string): ApplicationFailure {
  return ApplicationFailure.create({ message, type: FailureType.EndpointBusy, nonRetryable: false });
}

export function endpointUpdateFailed(message: string, nonRetryable = false): ApplicationFailure {
  return ApplicationFailure.create({ message, type: FailureType.EndpointUpdateFailed, nonRetryable });
}

export function jobFailed(message: string, nonRetryable = false): ApplicationFailure {
  return ApplicationFailure.create({ message, type: FailureType.JobFailed, nonRetryable });
}

export function smokeTestFailed(message: string): ApplicationFailure {
  return ApplicationFailure.create({ message, type: FailureType.SmokeTestFailed, nonRetryable: true });
}

export function transient(message: string, cause?: Error): ApplicationFailure {
  return ApplicationFailure.create({ message, type: FailureType.Transient, nonRetryable: false, cause });
}
