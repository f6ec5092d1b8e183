export * from './errors.js';
export * from './legacy-guest.js';
export * from './upgrade.js';
