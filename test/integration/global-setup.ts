import fs from 'node:fs';
import { startStack, stopStack } from '../../stack/launcher';
import { integrationSettings } from '../helpers/stack';

/** Starts a fresh local stack for the integration tests. */
export default async function globalSetup(): Promise<void> {
  const settings = integrationSettings();
  // A run that was killed before its teardown leaves services that still use the state folder.
  await stopStack(settings);
  fs.rmSync(settings.stateDir, { recursive: true, force: true });
  await startStack(settings, { exclusive: true });
}
