/**
 * The live-save scenario's comparison on a 512 MiB guest: the original's
 * pause with the live pre-copy against xl save -p, and both clones' total
 * time. Run only when named (ZC_XEN_ONLY=live-save-512): xl save -p of
 * 512 MiB under TCG takes minutes, too long for every run.
 */
import { destroyQuietly } from '../runner/dom0-tools.js';
import type { Scenario } from '../runner/types.js';
import { bootGuest, compareLiveAndSavePause, withLiveSaveRoot } from './live-save.js';

const scenario: Scenario = {
  name: 'live-save-512',
  title: 'vmclone create --memory of a 512 MiB guest, live pre-copy vs xl save -p',
  timeoutMs: 2_400_000,
  onlyWhenNamed: true,
  // dom0's root (half its memory) holds the 512 MiB save image beside the rest.
  dom0MemMiB: 3584,
  run: (ctx) =>
    withLiveSaveRoot(ctx, async (root) => {
      const vm = 'zc-live-512';
      try {
        await bootGuest(ctx, root, vm, { memoryMb: 512 });
        await compareLiveAndSavePause(ctx, root, vm);
      } finally {
        await destroyQuietly(`${vm}-clone`, ctx.log);
        await destroyQuietly(vm, ctx.log);
      }
    }),
};

export default scenario;
