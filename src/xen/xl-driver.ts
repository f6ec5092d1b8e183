import { readFile } from 'node:fs/promises';
import { type RunError, type RunResult, describeArgv, run } from '../process/index.js';
import { XlError, XlParseError } from './errors.js';
import { type DomId, type VmUuid, domId } from './paths.js';
import { type DiskSpec, printDisk } from './xl-config/disk.js';
import { XlConfig, type XlPlain, printValue, toValue } from './xl-config/document.js';
import { type VifSpec, printVif } from './xl-config/vif.js';
import {
  type XlBlockListEntry,
  type XlDomainDetails,
  type XlListEntry,
  type XlNetworkListEntry,
  classifyXlStderr,
  parseXlBlockList,
  parseXlInfo,
  parseXlList,
  parseXlListLong,
  parseXlNetworkList,
  summarizeStderr,
} from './xl-output.js';

export interface XlDriverOptions {
  /** The xl binary: a path, or a name looked up on PATH. Default `xl`. */
  xlPath?: string;
  /**
   * Per-command timeout; the process is killed (SIGKILL) when it runs out.
   * Default: ZYNCLONE_XL_TIMEOUT_MS from `env`, else 120 s.
   */
  timeoutMs?: number;
  /** Environment for xl (default: this process's). */
  env?: NodeJS.ProcessEnv;
}

export interface XlRunResult {
  stdout: string;
  stderr: string;
}

export interface XlRunOptions {
  timeoutMs?: number;
}

/** A domain as xl accepts it: a domid, or a name. */
export type DomainRef = DomId | string;

const MAX_OUTPUT = 64 * 1024 * 1024;

/** ZYNCLONE_XL_TIMEOUT_MS: a longer (or, in tests, shorter) limit for every xl command. */
function timeoutFromEnv(env: NodeJS.ProcessEnv): number | undefined {
  const raw = env.ZYNCLONE_XL_TIMEOUT_MS;
  if (raw === undefined || raw === '') return undefined;
  const ms = Number(raw);
  if (!Number.isInteger(ms) || ms <= 0) {
    throw new XlError(
      'XL_FAILED',
      `ZYNCLONE_XL_TIMEOUT_MS='${raw}' is not a positive whole number of milliseconds`,
      [],
      null,
      '',
    );
  }
  return ms;
}

/**
 * Runs `xl` with argv arrays (never a shell) and turns its output into data and
 * its failures into `XlError`s with stable codes. The same class drives the real
 * xl in dom0 and the simulator's.
 */
export class XlDriver {
  readonly xlPath: string;
  readonly timeoutMs: number;
  private readonly env: NodeJS.ProcessEnv | undefined;

  constructor(opts: XlDriverOptions = {}) {
    this.xlPath = opts.xlPath ?? 'xl';
    this.timeoutMs = opts.timeoutMs ?? timeoutFromEnv(opts.env ?? process.env) ?? 120_000;
    this.env = opts.env;
  }

  /** Runs `xl <args>`; rejects with XlError unless it exits 0. */
  async run(args: readonly string[], opts: XlRunOptions = {}): Promise<XlRunResult> {
    const argv = [this.xlPath, ...args];
    let res: RunResult;
    try {
      res = await run(argv, {
        timeoutMs: opts.timeoutMs ?? this.timeoutMs,
        maxOutputBytes: MAX_OUTPUT,
        ...(this.env === undefined ? {} : { env: this.env }),
        check: false,
      });
    } catch (e) {
      const err = e as RunError;
      const code =
        err.code === 'RUN_NOT_FOUND'
          ? 'XL_NOT_FOUND'
          : err.code === 'RUN_TIMEOUT'
            ? 'XL_TIMEOUT'
            : 'XL_FAILED';
      throw new XlError(code, err.message, argv, null, err.stderr ?? '', { cause: err });
    }
    if (res.status === 0) return { stdout: res.stdout, stderr: res.stderr };
    const how =
      res.status === null ? `was killed by ${res.signal}` : `exited with status ${res.status}`;
    const said = summarizeStderr(res.stderr);
    throw new XlError(
      classifyXlStderr(res.stderr),
      `${describeArgv(argv)} ${how}${said ? `: ${said}` : ''}`,
      argv,
      res.status,
      res.stderr,
    );
  }

  /**
   * `xl create [-p] <cfg> [key=value...]`. `extraKeys` are config lines xl applies
   * after the file (e.g. a new name). Resolves to the new domain's id.
   */
  async create(
    cfgPath: string,
    opts: { paused?: boolean; extraKeys?: Record<string, XlPlain> } = {},
  ): Promise<DomId> {
    const extra = Object.entries(opts.extraKeys ?? {}).map(
      ([k, v]) => `${k}=${printValue(toValue(v, k))}`,
    );
    const name = await this.configName(cfgPath, opts.extraKeys?.name);
    await this.run(['create', ...(opts.paused ? ['-p'] : []), cfgPath, ...extra]);
    return this.domid(name);
  }

  async destroy(dom: DomainRef): Promise<void> {
    await this.run(['destroy', String(dom)]);
  }

  /** `xl shutdown [-w]`: with `wait`, returns once the domain has shut down. */
  async shutdown(dom: DomainRef, opts: { wait?: boolean; timeoutMs?: number } = {}): Promise<void> {
    await this.run(['shutdown', ...(opts.wait ? ['-w'] : []), String(dom)], opts);
  }

  async reboot(dom: DomainRef): Promise<void> {
    await this.run(['reboot', String(dom)]);
  }

  async pause(dom: DomainRef): Promise<void> {
    await this.runReportingLibxlErrors(['pause', String(dom)]);
  }

  async unpause(dom: DomainRef): Promise<void> {
    await this.runReportingLibxlErrors(['unpause', String(dom)]);
  }

  async list(dom?: DomainRef): Promise<XlListEntry[]> {
    const { stdout } = await this.run(['list', ...(dom === undefined ? [] : [String(dom)])]);
    return parseXlList(stdout);
  }

  /**
   * `xl list -v`: every domain with the UUID the hypervisor holds. Unlike
   * `xl list -l`, which silently leaves out a domain whose configuration
   * libxl cannot retrieve (one whose `xl create` was killed half-way), it
   * lists every domain there is.
   */
  async listVerbose(): Promise<Array<XlListEntry & { uuid: VmUuid }>> {
    const { stdout } = await this.run(['list', '-v']);
    return parseXlList(stdout).map((d) => {
      if (d.uuid === undefined) {
        throw new XlParseError('xl list -v output', `domain ${d.name} has no UUID column`);
      }
      return { ...d, uuid: d.uuid };
    });
  }

  async listLong(dom?: DomainRef): Promise<XlDomainDetails[]> {
    const { stdout } = await this.run(['list', '-l', ...(dom === undefined ? [] : [String(dom)])]);
    return parseXlListLong(stdout);
  }

  async domid(name: string): Promise<DomId> {
    const { stdout } = await this.run(['domid', name]);
    const s = stdout.trim();
    if (!/^[0-9]+$/.test(s)) throw new XlParseError('xl domid output', `'${s}' is not a domid`);
    return domId(Number(s));
  }

  async domname(id: DomId): Promise<string> {
    const { stdout } = await this.run(['domname', String(id)]);
    const s = stdout.replace(/\n$/, '');
    if (s === '') throw new XlParseError('xl domname output', 'empty');
    return s;
  }

  async info(): Promise<Record<string, string>> {
    const { stdout } = await this.run(['info']);
    return parseXlInfo(stdout);
  }

  /**
   * `xl save [-p|-c] <dom> <file> [cfg]`. Without `paused`/`checkpoint` xl
   * destroys the domain after saving it.
   */
  async save(
    dom: DomainRef,
    file: string,
    opts: { paused?: boolean; checkpoint?: boolean; cfgPath?: string; timeoutMs?: number } = {},
  ): Promise<void> {
    if (opts.paused && opts.checkpoint) {
      throw new XlError(
        'XL_FAILED',
        'xl save: paused and checkpoint exclude each other',
        [],
        null,
        '',
      );
    }
    const flags = opts.paused ? ['-p'] : opts.checkpoint ? ['-c'] : [];
    const cfg = opts.cfgPath === undefined ? [] : [opts.cfgPath];
    await this.run(['save', ...flags, String(dom), file, ...cfg], opts);
  }

  /**
   * `xl restore [-p] [cfg] <file>`; a cfg replaces the config stored in the save
   * file (how a clone gets its own name and UUID). Resolves to the new domid.
   */
  async restore(
    file: string,
    opts: { paused?: boolean; cfgPath?: string; timeoutMs?: number } = {},
  ): Promise<DomId> {
    if (opts.cfgPath !== undefined) {
      const name = await this.configName(opts.cfgPath);
      await this.run(['restore', ...(opts.paused ? ['-p'] : []), opts.cfgPath, file], opts);
      return this.domid(name);
    }
    const before = new Set((await this.list()).map((d) => d.domid));
    await this.run(['restore', ...(opts.paused ? ['-p'] : []), file], opts);
    const added = (await this.list()).filter((d) => !before.has(d.domid));
    if (added.length !== 1) {
      throw new XlParseError('xl restore result', `expected one new domain, found ${added.length}`);
    }
    return added[0]!.domid;
  }

  async blockAttach(dom: DomainRef, spec: string | DiskSpec): Promise<void> {
    const s = typeof spec === 'string' ? spec : printDisk(spec);
    await this.run(['block-attach', String(dom), s]);
  }

  async blockDetach(dom: DomainRef, vdev: string, opts: { force?: boolean } = {}): Promise<void> {
    await this.run(['block-detach', ...(opts.force ? ['-f'] : []), String(dom), vdev]);
  }

  async blockList(dom: DomainRef): Promise<XlBlockListEntry[]> {
    // xl block-list exits 0 after "<dom> is an invalid domain identifier".
    const { stdout, stderr } = await this.run(['block-list', String(dom)]);
    this.throwIfNoSuchDomain(['block-list', String(dom)], stderr);
    return parseXlBlockList(stdout);
  }

  async networkAttach(dom: DomainRef, spec: string | VifSpec): Promise<void> {
    const s = typeof spec === 'string' ? spec : printVif(spec);
    const items = s
      .split(',')
      .map((i) => i.replace(/^ +/, ''))
      .filter((i) => i !== '');
    await this.run(['network-attach', String(dom), ...items]);
  }

  /** `devidOrMac`: a vif device id, or its MAC. */
  async networkDetach(dom: DomainRef, devidOrMac: number | string): Promise<void> {
    await this.run(['network-detach', String(dom), String(devidOrMac)]);
  }

  async networkList(dom: DomainRef): Promise<XlNetworkListEntry[]> {
    const { stdout } = await this.run(['network-list', String(dom)]);
    return parseXlNetworkList(stdout);
  }

  private async runReportingLibxlErrors(args: string[]): Promise<XlRunResult> {
    const res = await this.run(args);
    // xl pause/unpause ignore libxl's return code and exit 0 after an error.
    if (/^libxl: error: /m.test(res.stderr)) {
      const argv = [this.xlPath, ...args];
      throw new XlError(
        classifyXlStderr(res.stderr),
        `${describeArgv(argv)} failed: ${summarizeStderr(res.stderr)}`,
        argv,
        0,
        res.stderr,
      );
    }
    return res;
  }

  private throwIfNoSuchDomain(args: string[], stderr: string): void {
    if (classifyXlStderr(stderr) === 'XL_NO_SUCH_DOMAIN') {
      const argv = [this.xlPath, ...args];
      throw new XlError(
        'XL_NO_SUCH_DOMAIN',
        `${describeArgv(argv)}: ${summarizeStderr(stderr)}`,
        argv,
        0,
        stderr,
      );
    }
  }

  private async configName(cfgPath: string, override?: XlPlain): Promise<string> {
    if (typeof override === 'string') return override;
    let text: string;
    try {
      text = await readFile(cfgPath, 'utf8');
    } catch (e) {
      throw new XlError(
        'XL_BAD_CONFIG',
        `cannot read domain config ${cfgPath}: ${(e as Error).message}`,
        [],
        null,
        '',
        { cause: e },
      );
    }
    let name: string | undefined;
    try {
      name = XlConfig.parse(text, cfgPath).getString('name');
    } catch (e) {
      throw new XlError('XL_BAD_CONFIG', (e as Error).message, [], null, '', { cause: e });
    }
    if (name === undefined || name === '') {
      throw new XlError('XL_BAD_CONFIG', `domain config ${cfgPath} has no name`, [], null, '');
    }
    return name;
  }
}
