import path from 'node:path';

/** Repository root: this file lives in `<root>/common`. */
export const REPO_ROOT = path.resolve(__dirname, '..');

/** Folder for project-local tools: the `temporal` CLI and the uv installer environment. */
export const TOOLS_DIR = path.join(REPO_ROOT, '.tools');

/** Python project with the training jobs; its uv-managed environment is `ml/.venv`. */
export const ML_DIR = path.join(REPO_ROOT, 'ml');

export const PYTHON_BIN = path.join(ML_DIR, '.venv', 'bin', 'python');
export const MLFLOW_BIN = path.join(ML_DIR, '.venv', 'bin', 'mlflow');

/**
 * Returns the state folder that contains every piece of local state: the Temporal database, the MLflow
 * store and artifacts, the catalog, logs and pid files. `MLOPS_STATE_DIR` overrides the default `.mlops`.
 */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.MLOPS_STATE_DIR ?? path.join(REPO_ROOT, '.mlops'));
}
