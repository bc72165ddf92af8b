// Versioned schema. PRAGMA user_version holds the number of steps applied; each step runs in
// its own transaction. A database newer than this code is refused.

export const MIGRATIONS: string[] = [
  // 1: images, VMs (spec apart from status), the resource journal.
  `
  CREATE TABLE images (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kernel_path TEXT NOT NULL,
    rootfs_path TEXT NOT NULL,
    initrd_path TEXT,
    boot_args TEXT NOT NULL DEFAULT '',
    rootfs_size_bytes INTEGER NOT NULL,
    created_at TEXT NOT NULL
  );
  -- What the user asked for, plus the VM's fixed place in the address pool.
  CREATE TABLE vms (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE RESTRICT,
    vcpus INTEGER NOT NULL,
    memory_mib INTEGER NOT NULL,
    disk_size_bytes INTEGER NOT NULL,
    nat INTEGER NOT NULL,
    disk_strategy TEXT NOT NULL,
    net_index INTEGER NOT NULL UNIQUE,
    host_ip TEXT NOT NULL,
    guest_ip TEXT NOT NULL,
    tap TEXT NOT NULL,
    mac TEXT NOT NULL,
    created_at TEXT NOT NULL
  );
  -- What was observed on the host.
  CREATE TABLE vm_status (
    vm_id TEXT PRIMARY KEY REFERENCES vms(id) ON DELETE CASCADE,
    state TEXT NOT NULL CHECK (state IN ('creating','stopped','starting','running','stopping','error')),
    pid INTEGER,
    pid_start_time TEXT,
    last_error TEXT,
    updated_at TEXT NOT NULL
  );
  -- Every host handle a VM owns. No foreign key: a handle outlives a lost VM row until gc.
  CREATE TABLE resources (
    vm_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    handle TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (vm_id, kind, handle)
  );
  `,
];
