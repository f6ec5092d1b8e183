export * from './document.js';
export * from './vif.js';
export * from './disk.js';
