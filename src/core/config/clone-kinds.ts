/**
 * The kinds of clone, apart from the rest of the configuration schema: the
 * state store checks a clone's kind with them, and vmclone list and status
 * open the store without loading the schema (`npm run bench -- cli`).
 */
export const CLONE_KINDS = ['offline', 'online', 'memory'] as const;
export type CloneKind = (typeof CLONE_KINDS)[number];
