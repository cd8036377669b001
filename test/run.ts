// Runs every test suite of the project (jest, then pytest for ml/) after installing what they need, and
// prints one closing line "N passed, N failed" summed over both runners.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ML_DIR, REPO_ROOT } from '../common/paths';
import { provision } from '../stack/provision';

const RESULTS_DIR = path.join(REPO_ROOT, 'test-results');

interface Counts {
  passed: number;
  failed: number;
  skipped: number;
}

function runJest(extraArgs: string[]): Counts {
  const output = path.join(RESULTS_DIR, 'jest.json');
  fs.rmSync(output, { force: true });
  const jest = path.join(REPO_ROOT, 'node_modules', 'jest', 'bin', 'jest.js');
  spawnSync(process.execPath, [jest, '--runInBand', '--forceExit', '--json', `--outputFile=${output}`, ...extraArgs], {
    cwd: REPO_ROOT,
    stdio: 'inherit',
  });
  if (!fs.existsSync(output)) return { passed: 0, failed: 1, skipped: 0 };
  const report = JSON.parse(fs.readFileSync(output, 'utf8'));
  // A suite that fails to load has no test results; count it as one failure so it cannot pass silently.
  const brokenSuites = (report.testResults as { status: string; assertionResults: unknown[] }[]).filter(
    (suite) => suite.status === 'failed' && suite.assertionResults.length === 0,
  ).length;
  return {
    passed: report.numPassedTests,
    failed: report.numFailedTests + brokenSuites,
    skipped: report.numPendingTests + report.numTodoTests,
  };
}

function runPytest(): Counts {
  const output = path.join(RESULTS_DIR, 'pytest.xml');
  fs.rmSync(output, { force: true });
  spawnSync(path.join(ML_DIR, '.venv', 'bin', 'pytest'), ['-q', `--junitxml=${output}`], {
    cwd: ML_DIR,
    stdio: 'inherit',
  });
  if (!fs.existsSync(output)) return { passed: 0, failed: 1, skipped: 0 };
  const xml = fs.readFileSync(output, 'utf8');
  const suite = /<testsuite\b[^>]*>/.exec(xml)?.[0] ?? '';
  const attribute = (name: string): number => Number(new RegExp(`${name}="(\\d+)"`).exec(suite)?.[1] ?? 0);
  const failed = attribute('failures') + attribute('errors');
  const skipped = attribute('skipped');
  return { passed: attribute('tests') - failed - skipped, failed, skipped };
}

async function main(): Promise<void> {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  await provision();
  const jest = runJest(process.argv.slice(2));
  const pytest = runPytest();
  const total = {
    passed: jest.passed + pytest.passed,
    failed: jest.failed + pytest.failed,
    skipped: jest.skipped + pytest.skipped,
  };
  console.log(`\njest: ${jest.passed} passed, ${jest.failed} failed, ${jest.skipped} skipped`);
  console.log(`pytest: ${pytest.passed} passed, ${pytest.failed} failed, ${pytest.skipped} skipped`);
  fs.writeFileSync(path.join(RESULTS_DIR, 'summary.txt'), `${total.passed} passed, ${total.failed} failed\n`);
  console.log(`${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`);
  process.exit(total.failed > 0 || total.passed === 0 ? 1 : 0);
}

main().catch((error) => {
  console.error(`test run failed: ${(error as Error).message}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
});
