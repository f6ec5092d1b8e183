export * from './attachments.js';
export * from './errors.js';
export * from './switch.js';
