// The part of a simulated guest's kernel that talks to XenStore: its xenbus
// connection (the domain's own socket, so xenstored applies the guest's
// permissions) and the control/shutdown watch of Linux's
// drivers/xen/manage.c, which takes and acknowledges shutdown requests.
import { XsClient } from '../../xenstore/index.js';

export type ShutdownRequest = 'poweroff' | 'reboot' | 'suspend';

/** manage.c shutdown_handlers: what a Linux guest obeys ("halt" powers off too). */
const HANDLERS: Record<string, ShutdownRequest> = {
  poweroff: 'poweroff',
  halt: 'poweroff',
  reboot: 'reboot',
  suspend: 'suspend',
};

export class GuestXenbus {
  private closed = false;

  private constructor(
    private readonly xs: XsClient,
    private readonly home: string,
  ) {}

  /**
   * Boots the guest's PV drivers: connects as the domain, watches
   * control/shutdown (`onEvent` runs for the watch's first firing and every
   * change) and advertises the requests it handles, as Linux does at boot.
   */
  static async boot(
    socket: string,
    domid: number,
    onEvent: (g: GuestXenbus) => void,
  ): Promise<GuestXenbus> {
    const xs = await XsClient.connect({ path: socket, reconnect: false });
    const g = new GuestXenbus(xs, `/local/domain/${domid}`);
    try {
      const watch = await xs.watch(`${g.home}/control/shutdown`, 'shutdown');
      void (async () => {
        try {
          for await (const item of watch) if (item.kind === 'event') onEvent(g);
        } catch {
          // The connection went with the domain (release or teardown).
        }
      })();
      for (const f of ['feature-poweroff', 'feature-reboot', 'feature-suspend']) {
        await xs.write(`${g.home}/control/${f}`, '1');
      }
      return g;
    } catch (err) {
      await g.close();
      throw err;
    }
  }

  /**
   * manage.c shutdown_handler: reads control/shutdown and, for a request the
   * guest handles, clears it in the same transaction (the acknowledgement the
   * toolstack sees). Undefined for an empty node or one the guest ignores.
   */
  async takeShutdownRequest(): Promise<ShutdownRequest | undefined> {
    if (this.closed) return undefined;
    const path = `${this.home}/control/shutdown`;
    return this.xs.transaction(async (tx) => {
      const value = await tx.tryRead(path);
      const req = value === undefined ? undefined : HANDLERS[value];
      if (req !== undefined) await tx.write(path, '');
      return req;
    });
  }

  /** blkfront letting go of a disk: Closing, then Closed. */
  async closeFrontend(frontend: string): Promise<void> {
    if (this.closed) return;
    await this.xs.write(`${frontend}/state`, '5');
    await this.xs.write(`${frontend}/state`, '6');
  }

  /**
   * A frontend that keeps a disk in use says so where its OS does: Windows
   * xenvbd in the frontend's `error`, Linux (xenbus_dev_error) under the
   * domain's error/ tree as "<errno> <message>".
   */
  async refuseClose(frontend: string, devid: number, windows: boolean): Promise<void> {
    if (this.closed) return;
    if (windows) await this.xs.write(`${frontend}/error`, 'Unplug failed due to open handle(s)!');
    else {
      await this.xs.write(
        `${this.home}/error/device/vbd/${devid}/error`,
        '16 Device in use; refusing to close',
      );
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.xs.close().catch(() => {});
  }
}
