import fs from 'node:fs';
import path from 'node:path';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';

// Replays recorded workflow histories against the current workflow code. A change that would make a
// running workflow take a different path (a non-deterministic change) fails here instead of in production.
// Fresh histories are written to test-results/histories by the end-to-end test.

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'histories');
const files = fs.readdirSync(FIXTURES).filter((file) => file.endsWith('.json'));

beforeAll(() => {
  Runtime.install({ logger: new DefaultLogger('ERROR', () => undefined) });
});

describe('workflow replay', () => {
  it('has recorded histories', () => {
    expect(files.length).toBeGreaterThan(0);
  });

  it.each(files)('replays %s', async (file) => {
    const history = historyFromJSON(JSON.parse(fs.readFileSync(path.join(FIXTURES, file), 'utf8')));
    // Child workflow ids derive from the parent's id, so replay under the recorded id when the history has it.
    const workflowId = history.events?.[0]?.workflowExecutionStartedEventAttributes?.workflowId || file;
    await expect(
      Worker.runReplayHistory({ workflowsPath: require.resolve('../../workflows') }, history, workflowId),
    ).resolves.toBeUndefined();
  }, 60_000);
});
