import { Agent } from 'undici';
import { ServingError } from './errors';

/** A model server's response to one invocation, with the body as received. */
export interface ModelServerResponse {
  status: number;
  contentType: string;
  body: Buffer;
}

/**
 * uvicorn, which `mlflow models serve` runs, closes idle connections after 5 s (its
 * --timeout-keep-alive default). The pool drops them a second earlier, so a request is never sent on
 * a connection that the server is closing.
 */
const KEEP_ALIVE_TIMEOUT_MS = 4_000;

/**
 * HTTP client of the model servers: a keep-alive connection pool per model server (undici Agent), so
 * an invocation does not pay for a new TCP connection. The agent ignores HTTP_PROXY, which must not
 * apply to model servers on loopback.
 */
export class ModelServerClient {
  private readonly agent: Agent;

  /**
   * `timeoutMs` bounds the wait for the response headers and, separately, each wait for more of the
   * response body. MLflow sends its whole body right after the headers, so it bounds the request.
   */
  constructor(readonly timeoutMs: number) {
    this.agent = new Agent({ keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  }

  /**
   * Sends `POST <url>/invocations` with a JSON body and returns the response whatever its status.
   * Rejects with a ServingError: 504 DEADLINE_EXCEEDED on timeout, 503 TEMPORARILY_UNAVAILABLE when
   * the model server cannot be reached.
   */
  async invoke(url: string, jsonBody: string, describe: () => string): Promise<ModelServerResponse> {
    try {
      const response = await this.agent.request({
        origin: url,
        path: '/invocations',
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: jsonBody,
      });
      const body = Buffer.from(await response.body.arrayBuffer());
      const contentType = response.headers['content-type'];
      return {
        status: response.statusCode,
        contentType: typeof contentType === 'string' ? contentType : 'application/json',
        body,
      };
    } catch (error) {
      throw this.classify(error, url, describe());
    }
  }

  /** Closes the pooled connections. Requests in flight finish first. */
  close(): Promise<void> {
    return this.agent.close();
  }

  private classify(error: unknown, url: string, target: string): ServingError {
    const code = (error as { code?: unknown }).code;
    const detail = error instanceof Error ? error.message : String(error);
    if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
      return new ServingError(
        'DEADLINE_EXCEEDED',
        `${target} did not respond within ${this.timeoutMs} ms. Retry with fewer records per request.`,
      );
    }
    const reason = typeof code === 'string' ? `${code}: ${detail}` : detail;
    return new ServingError(
      'TEMPORARILY_UNAVAILABLE',
      `${target} is unreachable at ${url} (${reason}). Retry, and if it persists check the model server log in the logs folder of the serving plane's state directory.`,
    );
  }
}
