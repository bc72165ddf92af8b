// Runs scripts/customize-rootfs.sh as a real process on real ext4 images and reads the result back with debugfs.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const script = join(import.meta.dirname, '..', '..', 'scripts', 'customize-rootfs.sh');
const PATH = `/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${process.env.PATH ?? ''}`;
const isRoot = process.getuid?.() === 0;

let dir: string;
let pubKey: string;
let pubKeyPath: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'banger-customize-'));
  chmodSync(dir, 0o755);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'banger', '-f', join(dir, 'id_ed25519')]);
  pubKeyPath = join(dir, 'id_ed25519.pub');
  pubKey = readFileSync(pubKeyPath, 'utf8').trim();
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** An ext4 image holding a tiny tree: files maps paths to contents, dirs lists extra directories. */
function makeImage(name: string, files: Record<string, string>, dirs: string[] = []): string {
  const tree = join(dir, `${name}.tree`);
  for (const d of ['etc/systemd/system', ...dirs]) mkdirSync(join(tree, d), { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(tree, path, '..'), { recursive: true });
    writeFileSync(join(tree, path), content);
  }
  const image = join(dir, name);
  execFileSync('mkfs.ext4', ['-q', '-d', tree, '-F', image, '16M'], { env: { PATH } });
  return image;
}

const SSH_UNIT = '[Unit]\nDescription=OpenBSD Secure Shell server\n[Service]\nExecStart=/usr/sbin/sshd -D\n';

function customize(image: string, key = pubKeyPath, options: { uid?: number } = {}): SpawnSyncReturns<string> {
  return spawnSync(script, [image, key], {
    encoding: 'utf8',
    env: { PATH, TMPDIR: options.uid === undefined ? dir : '/tmp' },
    uid: options.uid,
    gid: options.uid,
  });
}

function debugfs(image: string, request: string): string {
  return execFileSync('debugfs', ['-R', request, image], {
    encoding: 'utf8',
    env: { PATH, DEBUGFS_PAGER: '__none__' },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
}

interface Entry {
  type: string;
  mode: string;
  uid: number;
  gid: number;
  link: string | null;
}

/** What `debugfs -R stat` says about a path, or null when it is absent. */
function stat(image: string, path: string): Entry | null {
  const out = debugfs(image, `stat ${path}`);
  const head = /Type: (\S+)\s+Mode:\s+(\d+)/.exec(out);
  if (!head) return null;
  const owner = /User:\s+(\d+)\s+Group:\s+(\d+)/.exec(out);
  const link = /Fast link dest: "(.*)"/.exec(out);
  return { type: head[1], mode: head[2], uid: Number(owner?.[1]), gid: Number(owner?.[2]), link: link?.[1] ?? null };
}

const cat = (image: string, path: string) => debugfs(image, `cat ${path}`);
const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');
const wants = '/etc/systemd/system/multi-user.target.wants';

const CHECKED_PATHS = [
  '/root',
  '/root/.ssh',
  '/root/.ssh/authorized_keys',
  '/usr/local/sbin/banger-net',
  '/etc/systemd/system/banger-net.service',
  '/etc/systemd/system/banger-ssh-hostkeys.service',
  `${wants}/banger-net.service`,
  `${wants}/banger-ssh-hostkeys.service`,
  `${wants}/ssh.service`,
];

function snapshot(image: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const p of CHECKED_PATHS) {
    const s = stat(image, p);
    out[p] = s && { ...s, content: s.type === 'regular' ? cat(image, p) : null };
  }
  return out;
}

describe('customize-rootfs.sh', () => {
  it('installs the key with strict modes, the boot units and their wants links', () => {
    const image = makeImage('rootfs.ext4', { 'lib/systemd/system/ssh.service': SSH_UNIT });
    const run = customize(image);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);

    expect(stat(image, '/root/.ssh')).toMatchObject({ type: 'directory', mode: '0700', uid: 0, gid: 0 });
    expect(stat(image, '/root/.ssh/authorized_keys')).toMatchObject({ type: 'regular', mode: '0600', uid: 0, gid: 0 });
    expect(cat(image, '/root/.ssh/authorized_keys')).toBe(`${pubKey}\n`);

    expect(stat(image, '/usr/local/sbin/banger-net')).toMatchObject({ type: 'regular', mode: '0755', uid: 0 });
    expect(cat(image, '/usr/local/sbin/banger-net')).toMatch(/^#!\/bin\/sh\n/);
    expect(stat(image, '/etc/systemd/system/banger-net.service')).toMatchObject({ type: 'regular', mode: '0644' });
    expect(cat(image, '/etc/systemd/system/banger-net.service')).toContain('ExecStart=/usr/local/sbin/banger-net');
    expect(cat(image, '/etc/systemd/system/banger-ssh-hostkeys.service')).toMatch(
      /Before=ssh\.service[\s\S]*ExecStart=\/usr\/bin\/ssh-keygen -A/,
    );

    expect(stat(image, `${wants}/ssh.service`)).toMatchObject({ type: 'symlink', link: '/lib/systemd/system/ssh.service' });
    expect(stat(image, `${wants}/banger-net.service`)).toMatchObject({
      type: 'symlink',
      link: '/etc/systemd/system/banger-net.service',
    });
    expect(stat(image, `${wants}/banger-ssh-hostkeys.service`)).toMatchObject({
      type: 'symlink',
      link: '/etc/systemd/system/banger-ssh-hostkeys.service',
    });

    // The filesystem is still consistent after debugfs's writes.
    execFileSync('e2fsck', ['-fn', image], { env: { PATH }, stdio: 'ignore' });
  });

  it('gives the same result when run twice', () => {
    const image = makeImage('rootfs.ext4', { 'lib/systemd/system/ssh.service': SSH_UNIT });
    expect(customize(image).status).toBe(0);
    const once = snapshot(image);
    const second = customize(image);
    expect(second.stderr).toBe('');
    expect(second.status).toBe(0);
    expect(snapshot(image)).toEqual(once);
    expect(cat(image, '/root/.ssh/authorized_keys').match(/ssh-ed25519/g)).toHaveLength(1);
    execFileSync('e2fsck', ['-fn', image], { env: { PATH }, stdio: 'ignore' });
  });

  it('keeps keys already authorized and fixes the modes of an existing .ssh', () => {
    const other = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDx other@host';
    const image = makeImage('rootfs.ext4', {
      'lib/systemd/system/ssh.service': SSH_UNIT,
      'root/.ssh/authorized_keys': `${other}\n`,
    });
    chmodSync(join(dir, 'rootfs.ext4.tree', 'root', '.ssh'), 0o755);
    expect(customize(image).status).toBe(0);
    expect(cat(image, '/root/.ssh/authorized_keys')).toBe(`${other}\n${pubKey}\n`);
    expect(stat(image, '/root/.ssh')).toMatchObject({ mode: '0700' });
  });

  it('finds the ssh unit under /usr/lib through a merged-/usr /lib symlink', () => {
    const tree = join(dir, 'merged.tree');
    mkdirSync(join(tree, 'usr', 'lib', 'systemd', 'system'), { recursive: true });
    mkdirSync(join(tree, 'etc', 'systemd', 'system'), { recursive: true });
    writeFileSync(join(tree, 'usr', 'lib', 'systemd', 'system', 'ssh.service'), SSH_UNIT);
    execFileSync('ln', ['-s', 'usr/lib', join(tree, 'lib')]);
    const image = join(dir, 'merged.ext4');
    execFileSync('mkfs.ext4', ['-q', '-d', tree, '-F', image, '16M'], { env: { PATH } });
    expect(customize(image).status).toBe(0);
    expect(stat(image, `${wants}/ssh.service`)).toMatchObject({ link: '/lib/systemd/system/ssh.service' });
  });

  it('warns and carries on when the image has no ssh unit', () => {
    const image = makeImage('rootfs.ext4', {});
    const run = customize(image);
    expect(run.status).toBe(0);
    expect(run.stderr).toMatch(/warning: no ssh\.service or sshd\.service in .*install openssh-server/);
    expect(stat(image, `${wants}/ssh.service`)).toBeNull();
    expect(cat(image, '/root/.ssh/authorized_keys')).toBe(`${pubKey}\n`);
  });

  it.skipIf(!isRoot)('works for an unprivileged user who owns the image, still making root the owner', () => {
    const image = makeImage('rootfs.ext4', { 'lib/systemd/system/ssh.service': SSH_UNIT });
    chownSync(image, 65534, 65534);
    const run = customize(image, pubKeyPath, { uid: 65534 });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(stat(image, '/root/.ssh/authorized_keys')).toMatchObject({ mode: '0600', uid: 0, gid: 0 });
    expect(stat(image, '/usr/local/sbin/banger-net')).toMatchObject({ uid: 0, gid: 0 });
  });

  describe('bad input fails with a clear message and leaves the image unchanged', () => {
    it('prints usage for a wrong number of arguments', () => {
      const run = spawnSync(script, ['only-one'], { encoding: 'utf8', env: { PATH } });
      expect(run.status).toBe(2);
      expect(run.stderr).toBe('usage: customize-rootfs.sh IMAGE PUBKEY_FILE\n');
    });

    it('names a missing image', () => {
      const missing = join(dir, 'nope.ext4');
      const run = customize(missing);
      expect(run.status).toBe(2);
      expect(run.stderr).toBe(`customize-rootfs.sh: image ${missing}: no such file\n`);
    });

    it('refuses an image that is not ext4', () => {
      const image = join(dir, 'garbage.img');
      writeFileSync(image, Buffer.alloc(1 << 20, 0x5a));
      const before = sha256(image);
      const run = customize(image);
      expect(run.status).toBe(2);
      expect(run.stderr).toBe(
        `customize-rootfs.sh: image ${image} is not an ext4 filesystem image (no ext2/3/4 superblock); make one with: mkfs.ext4 -d DIR FILE SIZE\n`,
      );
      expect(sha256(image)).toBe(before);
    });

    it.each([
      ['garbage', 'not a key at all\n'],
      ['a private key', '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----\n'],
      ['two keys', 'KEY\nKEY\n'],
      ['a key whose base64 is corrupt', 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBad banger\n'],
      ['an empty file', ''],
    ])('refuses %s as the public key', (_what, content) => {
      const image = makeImage('rootfs.ext4', { 'lib/systemd/system/ssh.service': SSH_UNIT });
      const before = sha256(image);
      const keyFile = join(dir, 'bad.pub');
      writeFileSync(keyFile, content.replaceAll('KEY', pubKey));
      const run = customize(image, keyFile);
      expect(run.status).toBe(2);
      expect(run.stderr).toBe(
        `customize-rootfs.sh: public key ${keyFile} is not one OpenSSH public key line (like 'ssh-ed25519 AAAA... comment')\n`,
      );
      expect(sha256(image)).toBe(before);
    });

    it('names a missing key file', () => {
      const image = makeImage('rootfs.ext4', {});
      const before = sha256(image);
      const run = customize(image, join(dir, 'none.pub'));
      expect(run.status).toBe(2);
      expect(run.stderr).toBe(`customize-rootfs.sh: public key ${join(dir, 'none.pub')}: no such file\n`);
      expect(sha256(image)).toBe(before);
    });
  });
});

/** Whether this host lets us make throwaway network, UTS and mount namespaces with a veth pair in them. */
function canUnshare(): boolean {
  if (!isRoot) return false;
  const probe = spawnSync('unshare', ['--net', '--uts', '--mount', 'ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'p0'], {
    env: { PATH },
  });
  return probe.status === 0;
}
const namespaces = canUnshare();
if (!namespaces) console.log('skipping the banger-net boot script tests: they need root and unshare with veth support');

describe.skipIf(!namespaces)('banger-net (the boot script the image gets), in throwaway namespaces', () => {
  /** Runs the installed banger-net twice under a fake /proc/cmdline and /etc/resolv.conf; returns what it set up. */
  function boot(cmdline: string, resolv: string, preset = ''): { out: string; resolv: string } {
    const image = makeImage('rootfs.ext4', {});
    expect(customize(image).status).toBe(0);
    const bangerNet = join(dir, 'banger-net');
    writeFileSync(bangerNet, cat(image, '/usr/local/sbin/banger-net'));
    writeFileSync(join(dir, 'cmdline'), `${cmdline}\n`);
    writeFileSync(join(dir, 'resolv.conf'), resolv);
    const inside = [
      `mount --bind ${dir}/cmdline /proc/cmdline`,
      `mount --bind ${dir}/resolv.conf /etc/resolv.conf`,
      'hostname before',
      'ip link add eth0 type veth peer name peer0',
      preset,
      `sh ${bangerNet}`,
      `sh ${bangerNet}`,
      'ip -4 -o addr show dev eth0',
      'ip route show default',
      'hostname',
    ].filter(Boolean);
    const out = execFileSync('unshare', ['--net', '--uts', '--mount', 'sh', '-ec', inside.join('\n')], {
      encoding: 'utf8',
      env: { PATH },
    });
    return { out, resolv: readFileSync(join(dir, 'resolv.conf'), 'utf8') };
  }

  it('configures address, default route, hostname and a fallback resolver from the kernel command line', () => {
    const { out, resolv } = boot(
      'console=ttyS0 ip=172.16.0.6::172.16.0.5:255.255.255.252::eth0:off systemd.hostname=dev-1 rw',
      '# no servers\n',
    );
    expect(out).toMatch(/^\d+: eth0\s+inet 172\.16\.0\.6\/30 /m);
    expect(out.match(/inet /g)).toHaveLength(1);
    expect(out).toMatch(/^default via 172\.16\.0\.5 dev eth0/m);
    expect(out.trim().split('\n').pop()).toBe('dev-1');
    expect(resolv).toBe('nameserver 1.1.1.1\nnameserver 8.8.8.8\n');
  });

  it('leaves an address the kernel already applied and a resolv.conf that has servers', () => {
    const { out, resolv } = boot(
      'ip=10.9.0.2::10.9.0.1:255.255.255.0::eth0:off:10.9.0.53',
      'nameserver 192.0.2.1\n',
      'ip addr add 10.9.0.2/24 dev eth0',
    );
    expect(out.match(/inet 10\.9\.0\.2\/24/g)).toHaveLength(1);
    expect(out).toMatch(/^default via 10\.9\.0\.1 dev eth0/m);
    expect(out.trim().split('\n').pop()).toBe('before');
    expect(resolv).toBe('nameserver 192.0.2.1\n');
  });

  it('uses the name servers given in ip= when resolv.conf has none', () => {
    const { resolv } = boot('ip=10.9.0.2::10.9.0.1:255.255.255.0::eth0:off:10.9.0.53:10.9.0.54', '');
    expect(resolv).toBe('nameserver 10.9.0.53\nnameserver 10.9.0.54\n');
  });
});
