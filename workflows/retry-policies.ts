import type { RetryPolicy } from '@temporalio/common';
import type { ConflictRetry } from './types';

// One place for retry behaviour. Every policy has a maximum, so exhaustion fails the run loudly.
// The failure type names match common/errors.ts; they are repeated here because workflow code may not
// import modules that pull in Node built-ins.
const NON_RETRYABLE = ['InvalidInput', 'InvalidConfig', 'NotFound', 'PermissionDenied', 'SmokeTestFailed'];

/** Short calls to catalogs and registries: transient errors back off from 1 s to 30 s. */
export const controlPlaneRetry: RetryPolicy = {
  initialInterval: '1s',
  backoffCoefficient: 2,
  maximumInterval: '30s',
  maximumAttempts: 5,
  nonRetryableErrorTypes: NON_RETRYABLE,
};

/** Training and logging jobs: few attempts, because each one costs minutes of compute. */
export const jobRetry: RetryPolicy = {
  initialInterval: '10s',
  backoffCoefficient: 2,
  maximumInterval: '2m',
  maximumAttempts: 3,
  nonRetryableErrorTypes: NON_RETRYABLE,
};

/**
 * Endpoint config updates: a 409 conflict (EndpointBusy) is retried at a fixed interval, as Databricks
 * endpoints stay busy until their current update finishes.
 */
export function endpointUpdateRetry(conflict: ConflictRetry): RetryPolicy {
  return {
    initialInterval: `${conflict.intervalSeconds}s`,
    backoffCoefficient: 1,
    maximumAttempts: conflict.maximumAttempts,
    nonRetryableErrorTypes: NON_RETRYABLE,
  };
}

/** Waiting for READY fails on its own deadline; retries only cover a lost worker. */
export const endpointWaitRetry: RetryPolicy = {
  initialInterval: '5s',
  backoffCoefficient: 2,
  maximumInterval: '1m',
  maximumAttempts: 3,
  nonRetryableErrorTypes: [...NON_RETRYABLE, 'EndpointUpdateFailed'],
};
