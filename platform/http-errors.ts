import { AxiosError } from 'axios';
import type { ApplicationFailure } from '@temporalio/common';
import { invalidInput, notFound, permissionDenied, transient } from '../common/errors';

/** Error body of Databricks and MLflow REST APIs. */
export interface ApiErrorBody {
  error_code?: string;
  message?: string;
}

export function apiError(error: unknown): { status?: number; code?: string; message: string } {
  if (error instanceof AxiosError) {
    const body = error.response?.data as ApiErrorBody | undefined;
    return {
      status: error.response?.status,
      code: body?.error_code,
      message: body?.message ?? error.message,
    };
  }
  return { message: (error as Error).message };
}

/**
 * Maps a failed REST call to a classified failure. 4xx responses other than 409 and 429 are
 * non-retryable, 409 conflicts are left to the caller, and network errors, 429 and 5xx are transient.
 */
export function classifyHttpError(error: unknown, action: string): ApplicationFailure {
  const { status, code, message } = apiError(error);
  const detail = `${action} failed: ${status ?? 'no response'} ${code ?? ''} ${message}`.replace(/\s+/g, ' ');
  if (status === 404) return notFound(detail);
  if (status === 401 || status === 403) return permissionDenied(`${detail}. Check the credentials on the worker host.`);
  if (status !== undefined && status >= 400 && status < 500 && status !== 409 && status !== 429) {
    return invalidInput(detail);
  }
  if (status === undefined && /ECONNREFUSED/.test(message)) {
    return transient(`${detail}. Is the service running? Start the local stack with npm run stack:up.`);
  }
  return transient(detail, error instanceof Error ? error : undefined);
}
