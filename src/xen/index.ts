export * from './errors.js';
export * from './paths.js';
export * from './xl-config/index.js';
export * from './xl-output.js';
export * from './xl-driver.js';
export * from './xs-wait.js';
