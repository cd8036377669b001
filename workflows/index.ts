export { trainAndDeploy } from './train-and-deploy';
export { deployModelVersion } from './deploy';
