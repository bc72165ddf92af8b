// A real debootstrap build (network, root, minutes): BANGER_SLOW_TESTS=1 npx vitest run test/slow/build-rootfs.test.ts
// BANGER_DEBIAN_MIRROR picks the mirror (default: the script's, deb.debian.org).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { checkKernel, checkRootfs } from '../../src/core/image-check.js';

const scripts = join(import.meta.dirname, '..', '..', 'scripts');
const PATH = `/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${process.env.PATH ?? ''}`;
const enabled = process.env.BANGER_SLOW_TESTS === '1';
const isRoot = process.getuid?.() === 0;
const skipReason = !enabled ? 'set BANGER_SLOW_TESTS=1 to run them' : !isRoot ? 'debootstrap needs root' : null;
if (skipReason) console.log(`skipping the debootstrap build tests: ${skipReason}`);

let dir: string;

beforeAll(() => {
  if (skipReason) return;
  // Under /var/tmp, not a tmpfs /tmp: the tree and image take a few hundred MB.
  mkdirSync('/var/tmp', { recursive: true });
  dir = mkdtempSync('/var/tmp/banger-slow-build-');
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function build(args: string[]): { phases: string[]; seconds: number } {
  const mirror = process.env.BANGER_DEBIAN_MIRROR;
  const started = Date.now();
  const run = spawnSync(join(scripts, 'build-rootfs.sh'), [...args, ...(mirror ? ['--mirror', mirror] : [])], {
    encoding: 'utf8',
    env: { PATH, TMPDIR: dir },
    maxBuffer: 256 << 20,
  });
  const seconds = (Date.now() - started) / 1000;
  if (run.status !== 0) throw new Error(`build-rootfs.sh exited ${run.status}:\n${run.stderr.slice(-4000)}`);
  return { phases: run.stdout.trim().split('\n'), seconds };
}

const debugfs = (image: string, request: string) =>
  execFileSync('debugfs', ['-R', request, image], { encoding: 'utf8', env: { PATH }, stdio: ['ignore', 'pipe', 'ignore'] });

describe.skipIf(skipReason !== null)('build-rootfs.sh with debootstrap', () => {
  it(
    'builds a bootable-looking ext4 Debian image that customize-rootfs.sh accepts',
    async () => {
      const image = join(dir, 'rootfs.ext4');
      const { phases, seconds } = build(['--out', image, '--size', '1G']);
      expect(phases).toEqual(['phase: debootstrap', 'phase: configure', 'phase: mkfs', 'phase: done']);
      await checkRootfs(image);
      const allocated = statSync(image).blocks * 512;
      console.log(`built ${image} in ${seconds.toFixed(1)}s: ${statSync(image).size} bytes, ${allocated} allocated`);
      expect(statSync(image).size).toBe(1 << 30);
      expect(debugfs(image, 'stat /usr/sbin/sshd')).toMatch(/Type: regular/);
      expect(debugfs(image, 'stat /bin/ip')).toMatch(/Type: regular/);
      expect(debugfs(image, 'cat /etc/machine-id')).toBe('');
      expect(debugfs(image, 'ls /etc/ssh')).not.toMatch(/ssh_host_/);
      // The work tree (with debootstrap's mounts) is gone.
      expect(readFileSync('/proc/mounts', 'utf8')).not.toContain(dir);

      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'banger', '-f', join(dir, 'key')]);
      const customize = spawnSync(join(scripts, 'customize-rootfs.sh'), [image, join(dir, 'key.pub')], {
        encoding: 'utf8',
        env: { PATH, TMPDIR: dir },
      });
      expect(customize.stderr).toBe('');
      expect(customize.status).toBe(0);
      expect(debugfs(image, 'cat /root/.ssh/authorized_keys')).toBe(readFileSync(join(dir, 'key.pub'), 'utf8'));
      expect(debugfs(image, 'stat /etc/systemd/system/multi-user.target.wants/ssh.service')).toContain(
        'Fast link dest: "/lib/systemd/system/ssh.service"',
      );
      execFileSync('e2fsck', ['-fn', image], { env: { PATH }, stdio: 'ignore' });
    },
    30 * 60_000,
  );

  it(
    "with --debian-kernel, hands out Debian's cloud kernel as vmlinuz, initrd and an ELF vmlinux",
    async () => {
      const image = join(dir, 'rootfs-kernel.ext4');
      const kdir = join(dir, 'kernel');
      mkdirSync(kdir);
      const { phases, seconds } = build(['--out', image, '--size', '2G', '--debian-kernel', kdir]);
      expect(phases).toEqual(['phase: debootstrap', 'phase: configure', 'phase: kernel', 'phase: mkfs', 'phase: done']);
      await checkRootfs(image);
      await checkKernel(join(kdir, 'vmlinux'));
      await expect(checkKernel(join(kdir, 'vmlinuz'))).rejects.toThrow(/looks like a bzImage/);
      expect(statSync(join(kdir, 'initrd.img')).size).toBeGreaterThan(1 << 20);
      const release = readFileSync(join(kdir, 'kernel-release'), 'utf8').trim();
      expect(debugfs(image, `stat /lib/modules/${release}/modules.dep`)).toMatch(/Type: regular/);
      expect(debugfs(image, 'ls /boot')).not.toMatch(/vmlinuz-/);
      console.log(
        `built ${image} with kernel ${release} in ${seconds.toFixed(1)}s: vmlinux ${statSync(join(kdir, 'vmlinux')).size} bytes, ` +
          `initrd ${statSync(join(kdir, 'initrd.img')).size} bytes, image ${statSync(image).blocks * 512} bytes allocated`,
      );
    },
    30 * 60_000,
  );
});
