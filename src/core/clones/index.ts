export * from './errors.js';
export * from './journal.js';
export * from './lifecycle.js';
export * from './plan.js';
export * from './publish.js';
export * from './bridge.js';
