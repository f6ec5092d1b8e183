// The web console page: redeems the ticket from the URL's #fragment on a
// control WebSocket (session.ts), shows the clone's state from the messages
// there, and shows the screen through noVNC on /vnc/<vm>. When the VNC
// connection drops (reboot, stop, new domid or port) it says so and
// reconnects with back-off for as long as the session lasts.

// Evaluated first (modules run in import order): it opens the session while
// noVNC's module is still starting. Keep the blank line: it keeps import
// sorting from moving noVNC above it.
import { vm, control, listen, wsBase } from './session.js';

import RFB from '@novnc/novnc';

interface Status {
  type: 'status';
  vm: string;
  cloneName: string;
  state: string;
  domid: number | null;
  console: 'available' | 'unavailable' | 'removed';
  reason: string | null;
  lockdown: { generation: number | null; ack: number | null; acknowledged: boolean };
}

type Control = { type: 'session'; session: string; status: Status } | Status;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000];

/** What tests and benchmarks read. */
const probe = {
  connects: 0,
  disconnects: 0,
  desktopName: '',
  // Milestones of the first connection (Date.now()), for the benchmark's breakdown.
  sessionAt: 0,
  connectedAt: 0,
  firstPaintAt: 0,
  sessionOpen: false,
  status: undefined as Status | undefined,
  rfb: undefined as RFB | undefined,
};
(window as unknown as { zcConsole: typeof probe }).zcConsole = probe;

let session = '';
let rfb: RFB | undefined;
let attempt = 0;
let retryTimer: number | undefined;
let sessionOver = false;

function say(text: string, kind: 'info' | 'ok' | 'problem' = 'info'): void {
  const m = $('message');
  m.textContent = text;
  m.className = kind === 'info' ? '' : kind;
}

function showStatus(s: Status): void {
  probe.status = s;
  $('vm').textContent = s.vm;
  $('clone-name').textContent = s.cloneName || '(no clone)';
  document.title = `${s.cloneName || s.vm} - ZynClone console`;
  $('state').textContent = s.domid === null ? s.state : `${s.state} (domain ${s.domid})`;
  const l = $('lockdown');
  l.textContent = s.lockdown.acknowledged
    ? `acknowledged (generation ${s.lockdown.generation})`
    : `NOT acknowledged (generation ${s.lockdown.generation ?? '-'}, ack ${s.lockdown.ack ?? '-'})`;
  l.className = s.lockdown.acknowledged ? '' : 'problem';
}

function setButtons(connected: boolean): void {
  ($('ctrl-alt-del') as HTMLButtonElement).disabled = !connected;
  ($('paste-open') as HTMLButtonElement).disabled = !connected;
}

/**
 * Records when noVNC first draws a framebuffer update on the visible canvas.
 * It also draws (the empty screen) when ServerInit sizes the canvas, before
 * its connect event; only draws after that event are the server's pixels.
 */
function watchFirstPaint(screen: HTMLElement): void {
  const canvas = screen.querySelector('canvas');
  const ctx = canvas?.getContext('2d');
  if (!ctx || probe.firstPaintAt) return;
  for (const name of ['drawImage', 'putImageData'] as const) {
    const original = ctx[name] as (...a: unknown[]) => void;
    ctx[name] = ((...args: unknown[]) => {
      if (!probe.firstPaintAt && probe.connectedAt) probe.firstPaintAt = Date.now();
      original.apply(ctx, args);
    }) as never;
  }
}

function connectVnc(): void {
  if (rfb || sessionOver || !session) return;
  window.clearTimeout(retryTimer);
  retryTimer = undefined;
  const screen = $('screen');
  say(`Connecting to the console of ${vm}'s clone…`);
  const r = new RFB(screen, `${wsBase}/vnc/${encodeURIComponent(vm)}?session=${session}`, {
    wsProtocols: ['binary'],
  });
  rfb = r;
  probe.rfb = r;
  r.scaleViewport = ($('scale') as HTMLInputElement).checked;
  r.background = '#1d1f21';
  watchFirstPaint(screen);
  r.addEventListener('connect', () => {
    attempt = 0;
    probe.connects++;
    probe.connectedAt ||= Date.now();
    setButtons(true);
    say('Connected.', 'ok');
    r.focus();
  });
  r.addEventListener('desktopname', (e) => {
    probe.desktopName = (e as CustomEvent<{ name: string }>).detail.name;
    $('desktop').textContent = probe.desktopName;
  });
  r.addEventListener('securityfailure', (e) => {
    say(
      `The VNC server refused the connection: ${(e as CustomEvent<{ reason?: string }>).detail.reason ?? 'security failure'}`,
      'problem',
    );
  });
  r.addEventListener('disconnect', () => {
    if (rfb === r) {
      rfb = undefined;
      probe.rfb = undefined;
    }
    probe.disconnects++;
    setButtons(false);
    scheduleReconnect();
  });
}

function scheduleReconnect(): void {
  if (sessionOver || retryTimer !== undefined) return;
  const delay = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)]!;
  attempt++;
  const s = probe.status;
  const why = s && s.console !== 'available' ? s.reason : 'the connection to the console dropped';
  say(`Disconnected: ${why}. Reconnecting in ${(delay / 1000).toFixed(1)} s…`, 'problem');
  retryTimer = window.setTimeout(() => {
    retryTimer = undefined;
    connectVnc();
  }, delay);
}

function followSession(): void {
  if (!control) {
    say('This link has no console ticket. Run "vmclone console VM" for a new link.', 'problem');
    return;
  }
  listen({ message: controlMessage, close: controlClosed });
}

function controlMessage(ev: MessageEvent): void {
  let msg: Control;
  try {
    msg = JSON.parse(String(ev.data)) as Control;
  } catch {
    return;
  }
  if (msg.type === 'session') {
    session = msg.session;
    probe.sessionOpen = true;
    probe.sessionAt = Date.now();
    showStatus(msg.status);
    if (msg.status.console === 'available') connectVnc();
    else say(`Waiting: ${msg.status.reason}.`, 'problem');
    return;
  }
  showStatus(msg);
  if (msg.console === 'available') {
    // The clone is back (new domain or port): try at once.
    attempt = 0;
    if (!rfb) connectVnc();
  } else if (msg.console === 'unavailable' && !rfb) {
    say(`Waiting: ${msg.reason}.`, 'problem');
  }
}

function controlClosed(ev: CloseEvent): void {
  sessionOver = true;
  probe.sessionOpen = false;
  window.clearTimeout(retryTimer);
  rfb?.disconnect();
  setButtons(false);
  if (!session) {
    say(
      'This console link cannot be used: a ticket works once, for the clone it was made for, ' +
        'within 60 s. Run "vmclone console VM" for a new link.',
      'problem',
    );
  } else {
    say(
      `The console session ended: ${ev.reason || 'connection to the console server lost'}.`,
      'problem',
    );
  }
}

/** Types `text` as keystrokes: X keysyms for Latin-1 and Unicode, Return for newlines. */
function typeText(text: string): void {
  if (!rfb) return;
  for (const ch of text.replace(/\r\n?/g, '\n')) {
    const cp = ch.codePointAt(0)!;
    const keysym = ch === '\n' ? 0xff0d : ch === '\t' ? 0xff09 : cp < 0x100 ? cp : 0x01000000 + cp;
    rfb.sendKey(keysym, null);
  }
}

$('ctrl-alt-del').addEventListener('click', () => rfb?.sendCtrlAltDel());
$('fullscreen').addEventListener('click', () => {
  if (document.fullscreenElement) void document.exitFullscreen();
  else void document.documentElement.requestFullscreen();
});
$('scale').addEventListener('change', () => {
  if (rfb) rfb.scaleViewport = ($('scale') as HTMLInputElement).checked;
});
$('paste-open').addEventListener('click', () => {
  $('paste').hidden = false;
  $('paste-text').focus();
});
$('paste-cancel').addEventListener('click', () => {
  $('paste').hidden = true;
});
$('paste').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const area = $('paste-text') as HTMLTextAreaElement;
  typeText(area.value);
  area.value = '';
  $('paste').hidden = true;
  rfb?.focus();
});

$('vm').textContent = vm;
followSession();
