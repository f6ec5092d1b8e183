/**
 * The storage layer's own end-to-end check of its LVM backends
 * (lvmSnapshotSelfTest): a throwaway volume group on a loop device, a thin
 * and a classic snapshot through planSnapshot/execute, contents, isolation,
 * removal twice, teardown. On real device-mapper in dom0.
 */
import { lvmSnapshotSelfTest } from '../../src/core/storage/lvm-selftest.js';
import { LaneError, run } from '../runner/dom0-tools.js';
import type { Scenario } from '../runner/types.js';

const scenario: Scenario = {
  name: 'lvm-selftest',
  title: 'lvmSnapshotSelfTest() on real LVM: thin and classic snapshots',
  timeoutMs: 180_000,
  async run(ctx) {
    await run('modprobe', ['dm-thin-pool'], { log: ctx.log });
    await run('modprobe', ['dm-snapshot'], { log: ctx.log });
    const report = await lvmSnapshotSelfTest({ workDir: ctx.workDir, log: ctx.log });
    const slow = report.steps.filter((s) => s.name.endsWith(': snapshot'));
    for (const s of slow) ctx.note(s.name.replace(': snapshot', '_snapshot'), s.detail ?? '');
    ctx.note('steps_ok', report.steps.filter((s) => s.ok).length);
    if (!report.ok) {
      throw new LaneError('LANE_LVM_SELFTEST', `lvmSnapshotSelfTest failed: ${report.error}`);
    }
    const left = await run('lvm', ['vgs', '--noheadings', '-o', 'vg_name'], { allowFail: true });
    if (/zcselftest/.test(left.stdout)) {
      throw new LaneError('LANE_LVM_LEFTOVER', `the self-test left a volume group: ${left.stdout}`);
    }
  },
};

export default scenario;
