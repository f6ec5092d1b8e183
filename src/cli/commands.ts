/**
 * vmclone's command line as data: every command, its arguments and options.
 * The parser, the help texts (and through them the man page), the bash
 * completion test and the README's synopsis test all read this one table.
 */
import { EXIT_CODES_HELP } from './exit-codes.js';

export interface ArgumentSpec {
  readonly name: string;
  readonly description: string;
  /** Optional arguments are shown as [name], required ones as <name>. */
  readonly optional?: boolean;
}

export interface OptionSpec {
  /** The long name without its dashes; handlers read the option by it. */
  readonly long: string;
  readonly short?: string;
  /** The placeholder of the value it takes (`--config <file>`); none: a flag. */
  readonly value?: string;
  readonly description: string;
  /** Given again, it adds a value instead of replacing it. */
  readonly repeatable?: boolean;
  readonly choices?: readonly string[];
  readonly required?: boolean;
  /** The value when the option is not given (shown in the help). */
  readonly default?: string;
  /** Long names of options that cannot be given together with this one. */
  readonly conflicts?: readonly string[];
}

export interface CommandSpec {
  readonly name: string;
  readonly description: string;
  readonly arguments: readonly ArgumentSpec[];
  readonly options: readonly OptionSpec[];
  /** Progress goes to stderr unless -q: the commands that change clones. */
  readonly progress?: boolean;
}

const quiet: OptionSpec = { long: 'quiet', short: 'q', description: 'no progress output' };
const original: ArgumentSpec = { name: 'vm', description: 'the original VM' };

function transition(name: string, description: string): CommandSpec {
  return { name, description, arguments: [original], options: [quiet], progress: true };
}

export const COMMANDS: readonly CommandSpec[] = [
  {
    name: 'create',
    description:
      'clone a VM; the clone is created paused and started once its lockdown is acknowledged',
    arguments: [{ name: 'vm', description: 'the original VM (domain name)' }],
    options: [
      {
        long: 'offline',
        description: 'the original is shut down; its disks are snapshotted or copied',
        conflicts: ['online', 'memory'],
      },
      {
        long: 'online',
        description: 'disk-only: pause the original only while its disks are snapshotted',
        conflicts: ['offline', 'memory'],
      },
      {
        long: 'memory',
        description:
          'with memory: copy memory while the original runs (live pre-copy; else xl save -p), snapshot disks in its final pause, resume it, restore the clone',
        conflicts: ['offline', 'online'],
      },
      { long: 'no-start', description: 'stop at state active (configured, not running)' },
      {
        long: 'config',
        value: 'file',
        description: "the original's xl config file (default <root>/etc/xen/<vm>.cfg)",
      },
      { long: 'json', description: 'print the result as JSON' },
      quiet,
    ],
    progress: true,
  },
  transition('start', 'start the clone (active or inactive -> running)'),
  {
    name: 'stop',
    description: 'shut the clone down (running -> active); lockdowns stay',
    arguments: [original],
    options: [
      {
        long: 'force',
        short: 'f',
        description: 'destroy the clone domain at once instead of shutting it down',
      },
      quiet,
    ],
    progress: true,
  },
  transition('activate', 'enforce the lockdowns on the original again (inactive -> active)'),
  transition(
    'deactivate',
    'lift the lockdowns on the original, keep the clone (active -> inactive)',
  ),
  transition(
    'remove',
    'delete the clone from any state: its domain, volumes, config and lockdowns (safe to repeat)',
  ),
  {
    name: 'switch-volume',
    description:
      'move a shared volume between the VM and its clone: detach from the holder (the guest must let go), attach to the other side',
    arguments: [
      original,
      { name: 'vdev', description: 'the shared volume, by virtual device (e.g. xvdb)' },
    ],
    options: [
      {
        long: 'to',
        value: 'side',
        description: 'the new holder',
        choices: ['clone', 'original'],
        required: true,
      },
      {
        long: 'force',
        description:
          'detach even if the guest does not let go (xl block-detach -f): the guest may crash or lose unwritten data',
      },
      { long: 'yes', short: 'y', description: 'do not ask to confirm --force' },
      { long: 'json', description: 'print the result as JSON' },
      quiet,
    ],
    progress: true,
  },
  {
    name: 'list',
    description: 'list the clones',
    arguments: [],
    options: [{ long: 'json', description: 'print JSON' }],
  },
  {
    name: 'status',
    description: "the clone of a VM: state, domain, lockdown generation and the net monitor's ack",
    arguments: [original],
    options: [{ long: 'json', description: 'print JSON' }],
  },
  {
    name: 'console',
    description:
      "a one-time URL (60 s) for the web console of the VM's running clone; opening it is all you do",
    arguments: [original],
    options: [
      { long: 'json', description: 'print JSON (its url field is the URL)' },
      { long: 'open', description: 'also open the URL in a browser, where one exists' },
    ],
  },
  {
    name: 'config',
    description:
      'show the effective configuration of a VM and where each value comes from, or change it',
    arguments: [{ name: 'vm', description: 'the VM' }],
    options: [
      {
        long: 'set',
        value: 'key=value',
        description: 'set a key in the VM override (repeatable)',
        repeatable: true,
      },
      {
        long: 'unset',
        value: 'key',
        description: 'remove a key from the VM override (repeatable)',
        repeatable: true,
      },
      {
        long: 'force',
        description: 'set keys even for a VM this host does not know (no domain, no xl config)',
      },
      { long: 'json', description: 'print JSON' },
    ],
  },
  {
    name: 'doctor',
    description:
      'check the host: xl, XenStore, monitor heartbeats, nftables lockdown, isolation bridge, config',
    arguments: [],
    options: [
      {
        long: 'netns',
        value: 'name',
        description:
          "network namespace of the network domain's bridges and nftables (default $ZYNCLONE_NETNS, else this one)",
      },
      { long: 'json', description: 'print JSON' },
    ],
  },
  {
    name: 'logs',
    description:
      "a daemon's log (net-monitor, clone-monitor, ...; none: all): the systemd journal, or a log file",
    arguments: [
      {
        name: 'daemon',
        description: 'the daemon, as in its unit name zynclone-<daemon>.service',
        optional: true,
      },
    ],
    options: [
      {
        long: 'lines',
        short: 'n',
        value: 'n',
        description: 'how many recent lines',
        default: '100',
      },
      { long: 'follow', short: 'f', description: 'keep printing new lines' },
      { long: 'file', value: 'path', description: 'read this log file instead of the journal' },
    ],
  },
  {
    name: 'upgrade',
    description:
      'migrate the state database, configuration files and XenStore tree to this release, after a backup',
    arguments: [],
    options: [
      { long: 'dry-run', description: 'only show what would change' },
      { long: 'json', description: 'print JSON' },
      { long: 'quiet', short: 'q', description: 'print nothing when there is nothing to do' },
    ],
  },
];

/** What `vmclone --help` shows after the commands. */
export const HELP_EPILOGUE = `
Examples:
  vmclone create web01                  clone web01 the configured way (default: online)
  vmclone create web01 --memory         clone with memory: the clone resumes where web01 was
  vmclone create web01 --offline --no-start
  vmclone status web01 --json           the clone's state, domain and lockdown ack
  vmclone stop web01 && vmclone deactivate web01
  vmclone remove web01                  delete the clone, its volumes and lockdowns
  vmclone switch-volume db01 xvdb --to clone
                                        move shared volume xvdb from db01 to its clone
  vmclone config web01 --set clone_vif_mask=0,2 --set mac_policy=regenerate
  vmclone list --json

${EXIT_CODES_HELP}

Environment:
  ZYNCLONE_ROOT    root prefix of every file (default /)
  XENSTORED_PATH   xenstored socket (default /run/xenstored/socket)
  NO_COLOR         no colour in progress output`;
