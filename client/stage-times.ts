import type { temporal } from '@temporalio/proto';

export interface ActivityTiming {
  activityType: string;
  attempts: number;
  /** From the first schedule to the completion, in seconds: includes retries and queueing. */
  seconds: number;
}

function millis(time: temporal.api.history.v1.IHistoryEvent['eventTime']): number {
  if (!time) return 0;
  return Number(time.seconds ?? 0) * 1000 + Math.floor((time.nanos ?? 0) / 1e6);
}

/** Returns each activity's wall time from a workflow history, in the order the activities ran. */
export function activityTimings(history: temporal.api.history.v1.IHistory): ActivityTiming[] {
  const scheduled = new Map<string, { type: string; at: number }>();
  const attempts = new Map<string, number>();
  const timings: ActivityTiming[] = [];
  for (const event of history.events ?? []) {
    const id = String(event.eventId);
    if (event.activityTaskScheduledEventAttributes) {
      scheduled.set(id, { type: event.activityTaskScheduledEventAttributes.activityType?.name ?? '?', at: millis(event.eventTime) });
    }
    const started = event.activityTaskStartedEventAttributes;
    if (started) attempts.set(String(started.scheduledEventId), started.attempt ?? 1);
    const completed = event.activityTaskCompletedEventAttributes;
    if (completed) {
      const origin = scheduled.get(String(completed.scheduledEventId));
      if (origin) {
        timings.push({
          activityType: origin.type,
          attempts: attempts.get(String(completed.scheduledEventId)) ?? 1,
          seconds: (millis(event.eventTime) - origin.at) / 1000,
        });
      }
    }
  }
  return timings;
}

export function formatTimings(timings: ActivityTiming[]): string {
  return timings
    .map((t) => `${t.activityType} ${t.seconds.toFixed(1)} s${t.attempts > 1 ? ` (${t.attempts} attempts)` : ''}`)
    .join(', ');
}
