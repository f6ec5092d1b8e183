// The guest protocol's test vectors, shared by the orchestrator's, the bash
// client's and the PowerShell module's tests.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

export interface Vectors {
  requestNode: string;
  replyRoot: string;
  protocolNode: string;
  replyStates: string[];
  noAnswerExit: number;
  clientRequests: {
    argv: string[];
    /** The PowerShell cmdlet that writes the same request, with `params`. */
    cmdlet: string;
    params: Record<string, string | boolean>;
    request: string;
  }[];
  parse: {
    raw?: string;
    rawHex?: string;
    id?: string;
    op?: string;
    args?: Record<string, string>;
    error?: string;
  }[];
  replies: { nodes: Record<string, string>; final: boolean; exit?: number }[];
}

export const vectors = JSON.parse(
  readFileSync(resolve(__dirname, '../fixtures/guest-protocol/vectors.json'), 'utf8'),
) as Vectors;
