/**
 * The storage layer's own view of one disk of the original VM. Deliberately
 * small, so it does not depend on how the xl config parser spells disks: the
 * caller maps a parsed `disk=[...]` entry onto this.
 */
export interface DiskSpec {
  /** Absolute path of the image file (kind `file`) or block device (kind `phy`). */
  readonly target: string;
  readonly format: DiskFormat;
  /** Virtual device as the guest sees it (xvda, hda, ...); names the clone's copy. */
  readonly vdev: string;
  readonly kind: 'file' | 'phy';
}

export type DiskFormat = 'raw' | 'qcow2' | 'qcow' | 'qed' | 'vhd';

/** DESIGN section 4. */
export type CloneKind = 'offline' | 'online-disk' | 'online-memory';

/** What the original domain is doing at the moment the question is asked. */
export type OriginalState = 'stopped' | 'running' | 'paused';

/** `auto` lets the chooser pick; any other value insists on that backend or fails. */
export type BackendChoice =
  | 'auto'
  | 'reflink'
  | 'copy'
  | 'qcow2-overlay'
  | 'lvm-thin'
  | 'lvm-classic';

export type BackendName = Exclude<BackendChoice, 'auto'>;

export interface FilePlanBase {
  readonly vdev: string;
  /** The original's image file. */
  readonly source: string;
  /** The clone's image file, created by execute(), deleted by remove(). */
  readonly dest: string;
  /** Format of the clone's image (what its xl disk spec must say). */
  readonly format: DiskFormat;
  /** Why the chooser picked this backend; for logs and `--dry-run` output. */
  readonly reason: string;
}

export interface ReflinkPlan extends FilePlanBase {
  readonly backend: 'reflink';
}

export interface CopyPlan extends FilePlanBase {
  readonly backend: 'copy';
  /** Apparent size of the source when planned, for progress displays. */
  readonly bytes: number;
}

export interface OverlayPlan extends FilePlanBase {
  readonly backend: 'qcow2-overlay';
  /** Format of the backing file (the original image), passed to qemu-img as -F. */
  readonly backingFormat: DiskFormat;
}

export interface LvmPlanBase {
  readonly vdev: string;
  readonly vg: string;
  /** The original's logical volume (name inside vg). */
  readonly lv: string;
  /** The original's device path, as in its disk spec. */
  readonly source: string;
  /** Name of the snapshot LV to create inside vg. */
  readonly name: string;
  /** Device path of the snapshot, for the clone's disk spec. */
  readonly dest: string;
  readonly format: DiskFormat;
  readonly reason: string;
}

export interface LvmThinPlan extends LvmPlanBase {
  readonly backend: 'lvm-thin';
}

export interface LvmClassicPlan extends LvmPlanBase {
  readonly backend: 'lvm-classic';
  /**
   * Copy-on-write space: bytes as a decimal string, or an lvcreate extent
   * expression such as `20%ORIGIN`.
   */
  readonly size: string;
}

/**
 * What will be done for one disk. Plain JSON data: the journal records the plan
 * before execute() runs, so a crash half-way can be rolled back with remove(plan).
 */
export type SnapshotPlan = ReflinkPlan | CopyPlan | OverlayPlan | LvmThinPlan | LvmClassicPlan;

/** A snapshot that exists: its plan plus when it was made. Plain JSON data. */
export type SnapshotRecord = SnapshotPlan & {
  /** ISO-8601 time the snapshot finished. */
  readonly createdAt: string;
  /** Wall time execute() took for this disk, in milliseconds. */
  readonly tookMs: number;
};

export interface CopyProgress {
  readonly bytesDone: number;
  readonly bytesTotal: number;
}

export type ProgressCallback = (progress: CopyProgress) => void;
