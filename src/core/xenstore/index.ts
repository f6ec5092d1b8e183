export * from './layout.js';
export { readPublishedVm, readPublishedVms } from './published-vms.js';
