export { trainAndDeploy, trainVariant } from './train-and-deploy';
export { deployModelVersion } from './deploy';
export { approveUpdate, rejectUpdate, approvalStateQuery } from './approval';
