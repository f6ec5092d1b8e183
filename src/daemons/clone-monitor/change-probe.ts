// How clone_monitor notices that the state store or the configuration
// changed. SQLite has no notifications, so a kept-open connection asks
// `PRAGMA data_version`, which changes whenever another connection commits (a
// read of the WAL index, no disk I/O). The configuration files are compared by
// size, mtime and inode: `vmclone config set` renames a new file into place.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { pathToFileURL } from 'node:url';
import type { ZynclonePaths } from '../../core/paths.js';

export class ChangeProbe {
  private readonly db: DatabaseSync;
  private lastData: number;
  private lastConfig: string;

  constructor(private readonly paths: ZynclonePaths) {
    // mode=rw: the store creates the database; the probe never does.
    const url = pathToFileURL(paths.stateDb);
    url.searchParams.set('mode', 'rw');
    this.db = new DatabaseSync(url);
    this.lastData = this.dataVersion();
    this.lastConfig = this.configFingerprint();
  }

  private dataVersion(): number {
    return Number(
      (this.db.prepare('PRAGMA data_version').get() as { data_version: unknown }).data_version,
    );
  }

  private configFingerprint(): string {
    const stamp = (file: string) => {
      try {
        const s = statSync(file);
        return `${file}:${s.ino}:${s.size}:${s.mtimeMs}`;
      } catch {
        return `${file}:-`;
      }
    };
    const parts = [stamp(this.paths.baseConfigFile), stamp(this.paths.overrideDir)];
    let names: string[] = [];
    try {
      names = readdirSync(this.paths.overrideDir).sort();
    } catch {
      // no override directory: no overrides
    }
    for (const n of names) parts.push(stamp(join(this.paths.overrideDir, n)));
    return parts.join('\n');
  }

  /** What changed since the last call. */
  poll(): { store: boolean; config: boolean } {
    const data = this.dataVersion();
    const config = this.configFingerprint();
    const changed = { store: data !== this.lastData, config: config !== this.lastConfig };
    this.lastData = data;
    this.lastConfig = config;
    return changed;
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
  }
}
