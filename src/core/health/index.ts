export * from './doctor.js';
