/**
 * ZynClone's XenStore layout (docs/xenstore-contract.md): the one place that
 * spells `/tool/zynclone` and the nodes below it. test/core/xenstore/layout.test.ts
 * holds this module and the contract's node list equal.
 */

export const ZC_ROOT = '/tool/zynclone';

/** The top-level subtrees, each with one writer (see the contract's ownership table). */
export const SUBTREES = {
  vm: `${ZC_ROOT}/vm`,
  net: `${ZC_ROOT}/net`,
  console: `${ZC_ROOT}/console`,
  'console-tickets': `${ZC_ROOT}/console-tickets`,
  daemons: `${ZC_ROOT}/daemons`,
  control: `${ZC_ROOT}/control`,
} as const;

export const VM_ROOT = SUBTREES.vm;
export const NET_ROOT = SUBTREES.net;
export const DAEMONS_ROOT = SUBTREES.daemons;

/** The version of this layout (absent: 1); `vmclone upgrade` migrates older ones. */
export const LAYOUT_VERSION_NODE = `${ZC_ROOT}/layout-version`;

/** Any write makes clone_monitor re-check everything at once. */
export const KICK_NODE = `${SUBTREES.control}/kick`;
/** Bumped on every nftables transaction the net monitor commits. */
export const RULESET_GENERATION_NODE = `${SUBTREES.net}/ruleset-generation`;

/** The nodes directly under `vm/$VM` (and in its `console/`, `frontend/`). */
export const VM_LEAVES = [
  'state',
  'generation',
  'clone-name',
  'clone-domid',
  'original-domid',
  'clone-vif-mask',
  'original-vif-mask',
  'console/type',
  'console/enabled',
  'frontend/problems',
] as const;
export type VmLeaf = (typeof VM_LEAVES)[number];

/** The two vif lists under `vm/$VM`, each `$DEVID/{name,masked}`. */
export const VIF_LISTS = ['clone-vif', 'original-vif'] as const;
export type VifList = (typeof VIF_LISTS)[number];
export const VIF_LEAVES = ['name', 'masked'] as const;
export type VifLeaf = (typeof VIF_LEAVES)[number];

export const DAEMON_LEAVES = ['heartbeat', 'heartbeat-ms', 'version', 'pid'] as const;
export type DaemonLeaf = (typeof DAEMON_LEAVES)[number];

/** `vm/$VM`: the clone lockdown clone_monitor publishes for a VM. */
export const vmNode = (vm: string): string => `${VM_ROOT}/${vm}`;
export const vmLeaf = (vm: string, leaf: VmLeaf): string => `${vmNode(vm)}/${leaf}`;
export const vifListNode = (vm: string, list: VifList): string => `${vmNode(vm)}/${list}`;
export const vifLeaf = (vm: string, list: VifList, devid: number | string, leaf: VifLeaf): string =>
  `${vifListNode(vm, list)}/${devid}/${leaf}`;

export const ACK_ROOT = `${NET_ROOT}/ack`;
export const APPLIED_ROOT = `${NET_ROOT}/applied`;
/** `net/ack/$VM`: the last generation of `vm/$VM` the net monitor applied. */
export const ackNode = (vm: string): string => `${ACK_ROOT}/${vm}`;
/** `net/applied/$VM`: what that generation applied (JSON). */
export const appliedNode = (vm: string): string => `${APPLIED_ROOT}/${vm}`;

export const daemonNode = (daemon: string): string => `${DAEMONS_ROOT}/${daemon}`;
export const daemonLeaf = (daemon: string, leaf: DaemonLeaf): string =>
  `${daemonNode(daemon)}/${leaf}`;

/** dom0 writes a console ticket's record here; the console domain reads single nodes. */
export const TICKET_ROOT = SUBTREES['console-tickets'];
export const ticketNode = (hash: string): string => `${TICKET_ROOT}/${hash}`;
/** Written by clone_console_monitor. */
export const CONSOLE_ROOT = SUBTREES.console;
export const CONSOLE_URL_NODE = `${CONSOLE_ROOT}/url`;
export const REDEEMED_ROOT = `${CONSOLE_ROOT}/redeemed`;
export const SESSIONS_ROOT = `${CONSOLE_ROOT}/sessions`;
export const redeemedNode = (hash: string): string => `${REDEEMED_ROOT}/${hash}`;
export const sessionNode = (id: string): string => `${SESSIONS_ROOT}/${id}`;

/**
 * A guest's side of clone_guest_orchestrator, relative to the guest's
 * `/local/domain/$DOMID`: the request it writes under its own `data/`, and
 * the dom0-owned `zynclone/` it can only read.
 */
export const GUEST_REQUEST_NODE = 'data/zynclone/request';
export const GUEST_REPLY_ROOT = 'zynclone';
export const GUEST_PROTOCOL_NODE = `${GUEST_REPLY_ROOT}/protocol`;
export const GUEST_REJECTED_NODE = `${GUEST_REPLY_ROOT}/rejected`;
export const GUEST_REPLY_FIELDS = [
  'state',
  'op',
  'code',
  'message',
  'clone-state',
  'clone-name',
] as const;
export const guestReplyNode = (id: string): string => `${GUEST_REPLY_ROOT}/reply/${id}`;

/** The VM a path under `vm/` concerns (a watch event); undefined for `vm/` itself or anything else. */
export function vmOfPath(path: string): string | undefined {
  if (!path.startsWith(`${VM_ROOT}/`)) return undefined;
  const name = path.slice(VM_ROOT.length + 1).split('/')[0];
  return name === '' ? undefined : name;
}

/** Every node of the contract, with `$VM`, `$DEVID`, `$DAEMON`, `$HASH` and `$ID` for the variable parts. */
export function contractNodes(): string[] {
  return [
    ...VM_LEAVES.map((leaf) => vmLeaf('$VM', leaf)),
    ...VIF_LISTS.flatMap((list) => VIF_LEAVES.map((leaf) => vifLeaf('$VM', list, '$DEVID', leaf))),
    LAYOUT_VERSION_NODE,
    KICK_NODE,
    ackNode('$VM'),
    appliedNode('$VM'),
    RULESET_GENERATION_NODE,
    ...DAEMON_LEAVES.map((leaf) => daemonLeaf('$DAEMON', leaf)),
    ticketNode('$HASH'),
    CONSOLE_URL_NODE,
    redeemedNode('$HASH'),
    sessionNode('$ID'),
    GUEST_REQUEST_NODE,
    GUEST_PROTOCOL_NODE,
    GUEST_REJECTED_NODE,
    ...GUEST_REPLY_FIELDS.map((field) => `${guestReplyNode('$ID')}/${field}`),
  ];
}
