/** Builds the web console page into `outdir` (default dist/console-page); resolves to it. */
export function buildConsolePage(outdir?: string): Promise<string>;
