import { defineSearchAttributeKey } from '@temporalio/common';

// Custom search attributes, registered by the stack launcher when the dev server starts. Keyword type,
// because the SQLite visibility store allows only a few Text attributes.
export const MLOPS_ENV = defineSearchAttributeKey('MlopsEnv', 'KEYWORD');
export const MLOPS_MODEL = defineSearchAttributeKey('MlopsModel', 'KEYWORD');
export const MLOPS_STAGE = defineSearchAttributeKey('MlopsStage', 'KEYWORD');

export const SEARCH_ATTRIBUTES = [MLOPS_ENV, MLOPS_MODEL, MLOPS_STAGE];
