export * from './config.js';
export * from './errors.js';
export * from './guest-cfg.js';
export * from './schema.js';
export { writeFileAtomic } from './atomic-write.js';
