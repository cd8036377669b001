export { trainAndDeploy, trainVariant } from './train-and-deploy';
export { deployModelVersion, deleteEndpoint } from './deploy';
export { approveUpdate, rejectUpdate, approvalStateQuery } from './approval';
