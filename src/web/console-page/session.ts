// The console session's control WebSocket, opened as the page's script starts:
// console.ts imports this module before noVNC, whose module waits at top level
// for a trial H.264 decode (WebCodecs). The ticket's round trip runs meanwhile
// instead of after it; its events wait here until the page listens.

export const vm = decodeURIComponent(location.pathname.split('/').pop() ?? '');
const ticket = new URLSearchParams(location.hash.slice(1)).get('ticket') ?? '';
// The ticket is spent by the first connection; keep it out of history and bookmarks.
history.replaceState(null, '', location.pathname);
export const wsBase = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}`;

export interface ControlHandlers {
  message(ev: MessageEvent): void;
  close(ev: CloseEvent): void;
}

/** The control socket, or undefined when the URL carries no ticket. */
export const control = ticket
  ? new WebSocket(
      `${wsBase}/session/${encodeURIComponent(vm)}?ticket=${encodeURIComponent(ticket)}`,
    )
  : undefined;

let handlers: ControlHandlers | undefined;
const early: (MessageEvent | CloseEvent)[] = [];
const deliver = (ev: MessageEvent | CloseEvent) => {
  if (!handlers) early.push(ev);
  else if (ev instanceof CloseEvent) handlers.close(ev);
  else handlers.message(ev);
};
if (control) {
  control.onmessage = deliver;
  control.onclose = deliver;
}

/** Starts delivering the control socket's events, those that came early first. */
export function listen(h: ControlHandlers): void {
  handlers = h;
  for (const ev of early.splice(0)) deliver(ev);
}
