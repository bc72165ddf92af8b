// image build through the CLI and a real daemon, with a stand-in debootstrap on PATH (the real one
// runs in the slow tier and in the QEMU end-to-end test): progress, registration, and a failed
// build that leaves nothing behind.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { chmodSync, mkdirSync, writeFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { BangerEnv, makeImageFiles } from '../helpers/banger-env.js';

const FAKE_DEBOOTSTRAP = `#!/bin/sh
# a stand-in for debootstrap: argv is [options...] SUITE TARGET MIRROR
set -e
for a; do :; done
eval "target=\\\${$(($# - 1))}"
[ -n "$FAKE_DEBOOTSTRAP_FAIL" ] && { echo "E: Couldn't download packages" >&2; exit 1; }
mkdir -p "$target/etc/ssh" "$target/lib/systemd/system" "$target/etc/systemd/system/multi-user.target.wants" "$target/root" "$target/var/lib/dbus"
printf '[Unit]\\nDescription=ssh\\n[Service]\\nExecStart=/usr/sbin/sshd -D\\n[Install]\\nWantedBy=multi-user.target\\n' > "$target/lib/systemd/system/ssh.service"
echo "$*" > "$target/etc/debootstrap-args"
`;

describe.skipIf(process.getuid?.() !== 0)('image build', () => {
  let env: BangerEnv;
  let files: ReturnType<typeof makeImageFiles>;
  const imagesDir = () => join(env.dataDir, 'images');

  beforeAll(() => {
    env = new BangerEnv({ BANGER_BUILD_ID: 'image-build-test' });
    const bin = join(env.dir, 'fakebin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'debootstrap'), FAKE_DEBOOTSTRAP);
    chmodSync(join(bin, 'debootstrap'), 0o755);
    env.env.PATH = `${bin}:${env.env.PATH}`;
    files = makeImageFiles(join(env.dir, 'src'), 8);
  });
  afterAll(async () => {
    await env?.cleanup();
  });

  it('builds, customizes and registers an image', () => {
    const img = env.json<any>(['image', 'build', 'deb', '--kernel', files.kernel, '--size', '256M', '--packages', 'curl,vim']);
    expect(img).toMatchObject({ name: 'deb', rootfsSizeBytes: 256 * 1024 * 1024, initrdPath: null });
    const args = spawnSync('debugfs', ['-R', 'cat /etc/debootstrap-args', img.rootfsPath], { encoding: 'utf8' }).stdout;
    expect(args).toMatch(/--variant=minbase/);
    expect(args).toMatch(/--include=openssh-server,systemd-sysv,iproute2,udev,curl,vim/);
    expect(args).toMatch(/ bookworm /);
    const keys = spawnSync('debugfs', ['-R', 'cat /root/.ssh/authorized_keys', img.rootfsPath], { encoding: 'utf8' }).stdout;
    expect(keys).toMatch(/^ssh-ed25519 /);
    expect(env.json<any[]>(['image', 'ls']).map((i) => i.name)).toEqual(['deb']);
  });

  it('leaves nothing behind when debootstrap fails', () => {
    const before = readdirSync(imagesDir()).sort();
    // the daemon runs debootstrap with its own environment: restart it with the failure switch
    env.cli(['daemon', 'stop']);
    const r = env.cli(['image', 'build', 'broken', '--kernel', files.kernel, '--size', '256M'], { env: { FAKE_DEBOOTSTRAP_FAIL: '1' } });
    env.cli(['daemon', 'stop']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/building image broken: .*build-rootfs\.sh.* exited 1/);
    expect(readdirSync(imagesDir()).sort()).toEqual(before);
    expect(env.json<any[]>(['image', 'ls']).map((i) => i.name)).toEqual(['deb']);
  });

  it('refuses bad input before doing anything', () => {
    const before = readdirSync(imagesDir()).sort();
    const cases: [string[], number, RegExp][] = [
      [['image', 'build', 'deb', '--kernel', files.kernel], 1, /image "deb" already exists/],
      [['image', 'build', 'nokernel'], 2, /needs --kernel PATH or --debian-kernel/],
      [['image', 'build', 'tiny', '--kernel', files.kernel, '--size', '1M'], 1, /sizeBytes/],
      [['image', 'build', 'badpkg', '--kernel', files.kernel, '--packages', 'Bad Pkg'], 1, /Debian package name/],
      [['image', 'build', 'notelf', '--kernel', files.rootfs], 1, /not an ELF/],
    ];
    for (const [args, code, pattern] of cases) {
      const r = env.cli(args);
      expect(r.code, args.join(' ')).toBe(code);
      expect(r.stderr, args.join(' ')).toMatch(pattern);
    }
    expect(readdirSync(imagesDir()).sort()).toEqual(before);
    expect(existsSync(join(env.dir, 'never'))).toBe(false);
  });
});
