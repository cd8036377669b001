import { ApplicationFailure, condition, defineQuery, defineUpdate, setHandler } from '@temporalio/workflow';
import type { ApprovalOutcome, PromotionSpec } from './types';

/** Decision maker and reason, both optional, stored as version tags and in the run result. */
export interface ApprovalInput {
  by?: string;
  reason?: string;
}

export interface ApprovalState {
  /** waiting: the run waits for `approve` or `reject`; idle: it does not (yet, or any more). */
  phase: 'idle' | 'waiting' | 'decided';
  /** Model version waiting for approval, while `phase` is waiting. */
  version?: string;
  outcome?: ApprovalOutcome;
}

/** Longest `by` or `reason` accepted; both become model version tags. */
const MAX_TEXT = 500;

/** Approves the promotion the run waits for. Rejected unless the run is waiting for approval. */
export const approveUpdate = defineUpdate<ApprovalState, [ApprovalInput]>('approve');
/** Rejects the promotion the run waits for; the champion stays as it is. */
export const rejectUpdate = defineUpdate<ApprovalState, [ApprovalInput]>('reject');
/** Returns whether the run waits for approval and of which version. */
export const approvalStateQuery = defineQuery<ApprovalState>('approvalState');

/**
 * Tracks the manual approval of a promotion. The handlers are registered when the run starts, so an
 * `approve` sent too early is rejected with a clear message instead of failing as an unknown update.
 */
export class PromotionApproval {
  private state: ApprovalState = { phase: 'idle' };

  constructor() {
    const decide = (status: 'approved' | 'rejected') => (input: ApprovalInput): ApprovalState => {
      const { by, reason } = input ?? {};
      const outcome: ApprovalOutcome = { status, ...(by ? { by } : {}), ...(reason ? { reason } : {}), at: new Date().toISOString() };
      this.state = { ...this.state, phase: 'decided', outcome };
      return this.state;
    };
    const validate = (input: ApprovalInput): void => {
      for (const [field, value] of Object.entries(input ?? {})) {
        if (value !== undefined && (typeof value !== 'string' || value.length > MAX_TEXT)) {
          throw ApplicationFailure.create({
            type: 'InvalidInput',
            nonRetryable: true,
            message: `${field} must be text of at most ${MAX_TEXT} characters, got ${JSON.stringify(value).slice(0, 80)}.`,
          });
        }
      }
      if (this.state.phase !== 'waiting') {
        throw ApplicationFailure.create({
          type: 'InvalidInput',
          nonRetryable: true,
          message:
            this.state.phase === 'idle'
              ? 'This run is not waiting for an approval: it has not reached the promotion step, or the gate kept the champion.'
              : `This run's promotion was already decided: ${this.state.outcome?.status}.`,
        });
      }
    };
    setHandler(approveUpdate, decide('approved'), { validator: validate });
    setHandler(rejectUpdate, decide('rejected'), { validator: validate });
    setHandler(approvalStateQuery, () => this.state);
  }

  /** Waits for `approve` or `reject` for `version`, or applies the configured outcome on timeout. */
  async waitFor(version: string, approval: PromotionSpec['approval']): Promise<ApprovalOutcome> {
    this.state = { phase: 'waiting', version };
    await condition(() => this.state.phase === 'decided', approval.timeoutSeconds * 1000);
    // An update accepted in the same activation as the timer counts, even when the timer won the race.
    if (this.state.phase !== 'decided') {
      const status = approval.onTimeout === 'approve' ? 'timed_out_approved' : 'timed_out_rejected';
      this.state = { phase: 'decided', version, outcome: { status, at: new Date().toISOString() } };
    }
    return this.state.outcome!;
  }
}
