import fs from 'node:fs';
import { startStack } from '../../stack/launcher';
import { integrationSettings } from '../helpers/stack';

/** Starts a fresh local stack for the integration tests. */
export default async function globalSetup(): Promise<void> {
  const settings = integrationSettings();
  fs.rmSync(settings.stateDir, { recursive: true, force: true });
  await startStack(settings);
}
