export * from './errors.js';
export * from './issue.js';
export * from './ticket.js';
export * from './sessions.js';
