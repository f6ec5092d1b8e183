/**
 * The serial-port protocol between dom0 and the host harness: one line per
 * event, `@@ZC-<KIND> <json>`. Xen's own console output can land on the same
 * line, so the parser looks for the tag anywhere and takes the JSON object
 * that follows it.
 */

export const MARKER_KINDS = [
  'MARK',
  'READY',
  'PLAN',
  'START',
  'RESULT',
  'SUMMARY',
  'END',
  'FATAL',
] as const;
export type MarkerKind = (typeof MARKER_KINDS)[number];

export interface Marker {
  kind: MarkerKind;
  data: unknown;
}

const MARKER_RE = /@@ZC-([A-Z]+) ([^\n]*)/;

export function formatMarker(kind: MarkerKind, data: unknown): string {
  return `@@ZC-${kind} ${JSON.stringify(data)}`;
}

export function parseMarker(line: string): Marker | undefined {
  const m = MARKER_RE.exec(line);
  if (!m) return undefined;
  const kind = m[1] as MarkerKind;
  if (!MARKER_KINDS.includes(kind)) return undefined;
  const body = m[2] ?? '';
  const open = body.search(/[[{]/);
  const close = Math.max(body.lastIndexOf('}'), body.lastIndexOf(']'));
  if (open < 0 || close < open) return undefined;
  try {
    return { kind, data: JSON.parse(body.slice(open, close + 1)) };
  } catch {
    return undefined;
  }
}
