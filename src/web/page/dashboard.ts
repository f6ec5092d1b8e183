/// <reference lib="dom" />
// The dashboard in the browser: draws VMs, clones, monitors and the doctor's
// findings from the API, keeps them current from the live view (/api/v1/events)
// and runs operations through the API with the session's CSRF token.

interface CloneView {
  vm: string;
  clone: {
    cloneName: string;
    state: string;
    kind: string;
    cloneDomid: number | null;
    requestedBy: string;
  } | null;
  lockdown: { generation: number | null; ack: number | null; acknowledged: boolean };
  domain: { domid: number; state: string; paused: boolean } | null;
  operation: { id: number; kind: string; steps: { name: string; status: string }[] } | null;
}
interface VmView {
  name: string;
  domid: number | null;
  state: string | null;
}
interface DaemonView {
  name: string;
  version: string | null;
  heartbeat: number | null;
  heartbeatMs: number | null;
}
interface Progress {
  vm: string;
  operation: string;
  kind: string;
  message: string;
  done?: number;
  total?: number;
}
interface Finding {
  check: string;
  ok: boolean;
  severity: string;
  message: string;
  fix?: string;
}

const clones = new Map<string, CloneView>();
const progress = new Map<string, string>();
const busy = new Set<string>();
/** The create form's choices per VM: the table is redrawn on every event. */
const createChoices = new Map<string, { kind: string; noStart: boolean }>();
let vms: VmView[] = [];
let daemons: DaemonView[] = [];
let csrf = '';

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<Record<'text' | 'className' | 'title', string>> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (props.text !== undefined) e.textContent = props.text;
  if (props.className !== undefined) e.className = props.className;
  if (props.title !== undefined) e.title = props.title;
  e.append(...children);
  return e;
}

function showError(text: string): void {
  document.getElementById('error')!.textContent = text;
}

function requestId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(18));
  return btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, '-')
    .replace(/\//g, '_');
}

async function call(method: string, path: string, body?: unknown): Promise<unknown> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (method !== 'GET') {
    headers['X-CSRF-Token'] = csrf;
    headers['X-Request-Id'] = requestId();
  }
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (r.status === 401) {
    location.href = '/login';
    throw new Error('logged out');
  }
  if (r.status === 204) return undefined;
  const out = (await r.json()) as { error?: { code: string; message: string } };
  if (!r.ok)
    throw new Error(`${out.error?.message ?? r.statusText} [${out.error?.code ?? r.status}]`);
  return out;
}

async function operate(vm: string, label: string, method: string, path: string, body?: unknown) {
  busy.add(vm);
  progress.set(vm, `${label}...`);
  showError('');
  render();
  try {
    await call(method, path, body);
    progress.delete(vm);
  } catch (err) {
    progress.delete(vm);
    showError(`${label} ${vm}: ${(err as Error).message}`);
  } finally {
    busy.delete(vm);
    render();
  }
}

function button(
  text: string,
  onClick: () => void,
  opts: { danger?: boolean; disabled?: boolean } = {},
) {
  const b = el('button', { text, className: opts.danger ? 'danger' : '' });
  b.dataset.action = text.toLowerCase().replace(/[^a-z]+/g, '-');
  b.disabled = opts.disabled ?? false;
  b.addEventListener('click', onClick);
  return b;
}

function actionsFor(vm: string, view: CloneView | undefined): HTMLElement {
  const cell = el('td');
  const disabled = busy.has(vm) || view?.operation != null;
  const api = `/api/v1/clones/${encodeURIComponent(vm)}`;
  const c = view?.clone;
  if (!c) {
    if (view?.operation) return cell;
    const choice = createChoices.get(vm) ?? { kind: 'online', noStart: false };
    const kind = el('select');
    kind.name = 'kind';
    for (const k of ['online', 'offline', 'memory']) kind.append(el('option', { text: k }));
    kind.value = choice.kind;
    const start = el('input');
    start.type = 'checkbox';
    start.name = 'no-start';
    start.checked = choice.noStart;
    const remember = () => createChoices.set(vm, { kind: kind.value, noStart: start.checked });
    kind.addEventListener('change', remember);
    start.addEventListener('change', remember);
    cell.append(
      kind,
      el('label', { text: ' no start ' }, start),
      button(
        'Clone',
        () =>
          void operate(vm, 'create', 'POST', api, {
            kind: kind.value,
            ...(start.checked ? { start: false } : {}),
          }),
        { disabled },
      ),
    );
  } else {
    if (c.state !== 'running') {
      cell.append(
        button('Start', () => void operate(vm, 'start', 'POST', `${api}/start`), { disabled }),
      );
    }
    if (c.state === 'running') {
      cell.append(
        button('Console', () => void openConsole(vm)),
        button(
          'Stop',
          () => {
            if (confirm(`Shut down clone ${c.cloneName}?`))
              void operate(vm, 'stop', 'POST', `${api}/stop`, {});
          },
          { danger: true, disabled },
        ),
        button(
          'Force stop',
          () => {
            if (confirm(`Destroy clone domain ${c.cloneName} at once?`))
              void operate(vm, 'stop', 'POST', `${api}/stop`, { force: true });
          },
          { danger: true, disabled },
        ),
      );
    }
    if (c.state === 'inactive') {
      cell.append(
        button('Activate', () => void operate(vm, 'activate', 'POST', `${api}/activate`), {
          disabled,
        }),
      );
    }
    if (c.state === 'active') {
      cell.append(
        button(
          'Deactivate',
          () => {
            if (confirm(`Lift the lockdowns on ${vm}?`))
              void operate(vm, 'deactivate', 'POST', `${api}/deactivate`);
          },
          { danger: true, disabled },
        ),
      );
    }
    cell.append(
      button(
        'Remove',
        () => {
          if (confirm(`Remove clone ${c.cloneName} with its volumes? This cannot be undone.`))
            void operate(vm, 'remove', 'DELETE', api);
        },
        { danger: true, disabled },
      ),
    );
  }
  cell.append(button('Config', () => void toggleConfig(vm)));
  return cell;
}

/**
 * Opens the clone's console in a new tab through a fresh one-time ticket. The
 * tab is opened during the click, so no pop-up blocker stops it, and pointed
 * at the console once the ticket is there; it gets no handle on this page.
 */
async function openConsole(vm: string): Promise<void> {
  const tab = window.open('', '_blank');
  showError('');
  try {
    const t = (await call('POST', `/api/v1/clones/${encodeURIComponent(vm)}/console`)) as {
      url: string;
    };
    if (!tab) throw new Error('the browser blocked the new tab; allow pop-ups for this page');
    tab.opener = null;
    tab.location.href = t.url;
  } catch (err) {
    tab?.close();
    showError(`console ${vm}: ${(err as Error).message}`);
  }
}

function lockdownText(v: CloneView): HTMLElement {
  const l = v.lockdown;
  if (l.generation === null) return el('span', { text: '-' });
  return el('span', {
    text: `gen ${l.generation}, ack ${l.ack ?? '-'}${l.acknowledged ? ' (acknowledged)' : ' (pending)'}`,
    className: l.acknowledged ? 'ok lockdown' : 'warn lockdown',
  });
}

function render(): void {
  const body = document.querySelector('#vms tbody')!;
  const names = new Set([...vms.map((v) => v.name), ...clones.keys()]);
  const byName = new Map(vms.map((v) => [v.name, v]));
  const rows: HTMLElement[] = [];
  for (const vm of [...names].sort()) {
    const v = clones.get(vm);
    const d = byName.get(vm);
    const c = v?.clone;
    const op = v?.operation;
    const lastStep = op?.steps[op.steps.length - 1];
    const opText = op
      ? `${op.kind}${lastStep ? `: ${lastStep.name} (${lastStep.status})` : ''}`
      : (progress.get(vm) ?? '');
    const row = el(
      'tr',
      {},
      el('td', { text: vm }),
      el('td', { text: d?.domid != null ? `${d.domid} ${d.state ?? ''}` : 'not running' }),
      el('td', { text: c ? `${c.cloneName}${v?.domain ? ` (dom ${v.domain.domid})` : ''}` : '-' }),
      el('td', {
        text: c?.state ?? '-',
        className: `state clone-state state-${c?.state ?? 'none'}`,
      }),
      el('td', { text: c?.kind ?? '-', className: 'clone-kind' }),
      el('td', {}, v ? lockdownText(v) : '-'),
      el('td', { className: 'progress' }, opText),
      actionsFor(vm, v),
    );
    row.dataset.vm = vm;
    rows.push(row);
    const cfg = configs.get(vm);
    if (cfg) rows.push(cfg);
  }
  body.replaceChildren(...rows);
  renderDaemons();
}

function renderDaemons(): void {
  const body = document.querySelector('#daemons tbody')!;
  body.replaceChildren(
    ...daemons.map((d) => {
      const age = d.heartbeat === null ? null : Math.max(0, Date.now() - d.heartbeat);
      const limit = 3 * (d.heartbeatMs ?? 5000);
      const row = el(
        'tr',
        {},
        el('td', { text: d.name }),
        el('td', { text: d.version ?? '-' }),
        el('td', {
          text: age === null ? 'never' : `${(age / 1000).toFixed(1)} s ago`,
          className: age !== null && age <= limit ? 'ok' : 'bad',
        }),
      );
      row.dataset.daemon = d.name;
      return row;
    }),
  );
}

// ---- config: view and change one VM's settings ---------------------------

const configs = new Map<string, HTMLElement>();

async function toggleConfig(vm: string): Promise<void> {
  if (configs.delete(vm)) return render();
  try {
    const cfg = (await call('GET', `/api/v1/vms/${encodeURIComponent(vm)}/config`)) as {
      values: Record<string, unknown>;
      origins: Record<string, string>;
    };
    const table = el('table', { className: 'config' });
    for (const [key, value] of Object.entries(cfg.values)) {
      table.append(
        el(
          'tr',
          {},
          el('td', { text: key }),
          el('td', { text: JSON.stringify(value) }),
          el('td', { text: cfg.origins[key] ?? '' }),
        ),
      );
    }
    const key = el('input');
    key.placeholder = 'key';
    key.name = 'key';
    const value = el('input');
    value.placeholder = 'value';
    value.name = 'value';
    const path = `/api/v1/vms/${encodeURIComponent(vm)}/config`;
    const change = async (patch: unknown) => {
      try {
        await call('PATCH', path, patch);
        configs.delete(vm);
        await toggleConfig(vm);
      } catch (err) {
        showError(`config ${vm}: ${(err as Error).message}`);
      }
    };
    const cell = el(
      'td',
      {},
      table,
      key,
      value,
      button('Set', () => void change({ set: { [key.value]: value.value } })),
      button('Unset', () => void change({ unset: [key.value] })),
    );
    cell.colSpan = 8;
    const row = el('tr', { className: 'config-row' }, cell);
    row.dataset.configOf = vm;
    configs.set(vm, row);
    render();
  } catch (err) {
    showError(`config ${vm}: ${(err as Error).message}`);
  }
}

// ---- doctor ---------------------------------------------------------------

async function runDoctor(): Promise<void> {
  const box = document.getElementById('doctor')!;
  box.textContent = 'running...';
  try {
    const r = (await call('GET', '/api/v1/doctor')) as { healthy: boolean; findings: Finding[] };
    box.replaceChildren(
      el('p', {
        text: r.healthy ? 'healthy' : 'problems found',
        className: r.healthy ? 'ok' : 'bad',
      }),
      el(
        'ul',
        {},
        ...r.findings.map((f) =>
          el(
            'li',
            { className: f.ok ? 'ok' : f.severity === 'warning' ? 'warn' : 'bad' },
            `${f.check}: ${f.message}${!f.ok && f.fix ? ` (fix: ${f.fix})` : ''}`,
          ),
        ),
      ),
    );
  } catch (err) {
    box.textContent = (err as Error).message;
  }
}

// ---- live view --------------------------------------------------------------

function follow(): void {
  const live = document.getElementById('live')!;
  const es = new EventSource('/api/v1/events');
  const on = <T>(type: string, fn: (data: T) => void) =>
    es.addEventListener(type, (e) => {
      fn(JSON.parse((e as MessageEvent<string>).data) as T);
      render();
    });
  es.onopen = () => {
    live.textContent = 'live';
  };
  es.onerror = () => {
    live.textContent = 'reconnecting...';
  };
  on<{ clones: CloneView[]; vms: VmView[]; daemons: DaemonView[] }>('snapshot', (s) => {
    clones.clear();
    for (const c of s.clones) clones.set(c.vm, c);
    vms = s.vms;
    daemons = s.daemons;
  });
  // Progress lines belong to a running operation: they go when it ends.
  on<CloneView>('clone', (c) => {
    clones.set(c.vm, c);
    if (c.operation === null && !busy.has(c.vm)) progress.delete(c.vm);
  });
  on<{ vm: string }>('clone-gone', (g) => {
    clones.delete(g.vm);
    if (!busy.has(g.vm)) progress.delete(g.vm);
  });
  on<VmView[]>('vms', (v) => {
    vms = v;
  });
  on<DaemonView[]>('daemons', (d) => {
    daemons = d;
  });
  on<Progress>('progress', (p) => {
    const bytes =
      p.done !== undefined && p.total ? ` ${Math.floor((100 * p.done) / p.total)}%` : '';
    progress.set(p.vm, `${p.operation}: ${p.message}${bytes}`);
  });
}

async function main(): Promise<void> {
  const s = (await call('GET', '/api/v1/session')) as { csrfToken: string | null };
  csrf = s.csrfToken ?? '';
  document.getElementById('logout')!.addEventListener('submit', (e) => {
    e.preventDefault();
    void call('POST', '/logout').finally(() => {
      location.href = '/login';
    });
  });
  document.getElementById('run-doctor')!.addEventListener('click', () => void runDoctor());
  follow();
  void runDoctor();
  setInterval(renderDaemons, 1000);
}

void main().catch((err) => showError((err as Error).message));
