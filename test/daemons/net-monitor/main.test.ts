// The command line: bad options are refused before anything touches nftables.
import { describe, expect, it, vi } from 'vitest';
import { runNetMonitor } from '../../../src/daemons/net-monitor/main.js';

describe('zynclone net-monitor options', () => {
  it('prints usage for --help and refuses bad options with exit status 2', async () => {
    const out = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await runNetMonitor(['--help'])).toBe(0);
      expect(String(out.mock.calls[0]?.[0])).toContain('--clone-vif-prefix');
      expect(await runNetMonitor(['--table', 'no spaces'])).toBe(2);
      expect(String(err.mock.calls.at(-1)?.[0])).toMatch(/invalid nftables table name/);
      expect(await runNetMonitor(['--clone-vif-prefix', 'zc*'])).toBe(2);
      expect(String(err.mock.calls.at(-1)?.[0])).toMatch(/clone vif prefix/);
      expect(await runNetMonitor(['--nft-backend', 'iptables'])).toBe(2);
      expect(await runNetMonitor(['--bogus'])).toBe(2);
    } finally {
      out.mockRestore();
      err.mockRestore();
    }
  });
});
