export * from './errors.js';
export * from './owner.js';
export * from './store.js';
export * from './types.js';
export { SCHEMA_VERSION } from './migrations.js';
export { copyDatabase, readSchemaVersion } from './maintenance.js';
