#!/usr/bin/env node
// A qemu-system-x86_64 stand-in for testing the QEMU stand-in without booting anything: it records
// its argv, prints a console line on stdout, serves an HMP-like monitor on the abstract socket named
// by its -chardev option, and exits 0 on `sendkey ctrl-alt-delete`, as QEMU does when the guest
// reboots under -no-reboot. FAKE_QEMU_RECORD=<file> gets the argv as JSON; FAKE_QEMU_MODE=fail
// exits 1 at once with a QEMU-like error, FAKE_QEMU_MODE=hang never opens its monitor.
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:net';

const argv = process.argv.slice(2);
if (process.env.FAKE_QEMU_RECORD) appendFileSync(process.env.FAKE_QEMU_RECORD, `${JSON.stringify(argv)}\n`);
const mode = process.env.FAKE_QEMU_MODE ?? '';
if (mode === 'fail') {
  process.stderr.write('qemu-system-x86_64: -netdev tap,id=net0: could not configure /dev/net/tun: Operation not permitted\n');
  process.exit(1);
}
process.stdout.write('fake-qemu: the guest console\n');
if (mode === 'hang') setInterval(() => {}, 1 << 30);
else {
  const chardev = argv[argv.indexOf('-chardev') + 1] ?? '';
  const path = /(?:^|,)path=([^,]+)/.exec(chardev)?.[1];
  if (!path || !/(?:^|,)abstract=on(?:,|$)/.test(chardev)) {
    process.stderr.write(`fake-qemu: no abstract monitor socket in -chardev ${chardev}\n`);
    process.exit(1);
  }
  const server = createServer((sock) => {
    sock.write("QEMU fake monitor - type 'help' for more information\r\n(qemu) ");
    let buffered = '';
    sock.on('data', (d) => {
      buffered += d.toString('utf8');
      let i;
      while ((i = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, i).trim();
        buffered = buffered.slice(i + 1);
        if (line === 'sendkey ctrl-alt-delete') {
          process.stdout.write('reboot: Restarting system\n');
          setTimeout(() => process.exit(0), 50);
        }
        sock.write('\r\n(qemu) ');
      }
    });
  });
  // Node binds "\0name" with the whole sockaddr_un length, as QEMU's tight=off does.
  setTimeout(() => server.listen(`\0${path}`), 100);
}
