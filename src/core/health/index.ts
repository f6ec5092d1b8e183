export * from './doctor.js';
export { readVmInputs } from './xenstore-read.js';
