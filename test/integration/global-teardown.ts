import { stopStack } from '../../stack/launcher';
import { integrationSettings } from '../helpers/stack';

export default async function globalTeardown(): Promise<void> {
  await stopStack(integrationSettings());
}
