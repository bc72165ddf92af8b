// banger vm create | ls | show | start | stop | restart | rm | ssh | logs
import { Command } from 'commander';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { VmView } from '../../core/models.js';
import { vmDir } from '../../core/paths.js';
import { sshArgv } from '../../host/ssh.js';
import { followFile, tailLines } from '../../firecracker/console.js';
import type { CliContext } from '../context.js';
import { CliError } from '../errors.js';
import { humanAge, humanBytes, keyValues, printJson, table } from '../output.js';
import { checkName, intFlag, sizeFlag } from '../parse.js';
import { MAX_VCPUS, MIN_MEMORY_MIB, MAX_MEMORY_MIB } from '../../core/limits.js';

function printVm(vm: VmView): void {
  process.stdout.write(
    keyValues([
      ['id', vm.id],
      ['name', vm.name],
      ['state', vm.state],
      ['image', vm.image],
      ['vcpus', String(vm.vcpus)],
      ['memory', `${vm.memoryMib} MiB`],
      ['disk', humanBytes(vm.diskSizeBytes)],
      ['guest ip', vm.guestIp],
      ['host ip', vm.hostIp],
      ['tap', vm.tap],
      ['mac', vm.mac],
      ['nat', vm.nat ? 'yes' : 'no'],
      ['pid', vm.pid === null ? '-' : String(vm.pid)],
      ['created', vm.createdAt],
      ['last error', vm.lastError ?? '-'],
    ]),
  );
}

function printList(vms: VmView[], o: { json?: boolean; quiet?: boolean }): void {
  if (o.json) return printJson(vms);
  if (o.quiet) {
    process.stdout.write(vms.map((v) => `${v.id}\n`).join(''));
    return;
  }
  process.stdout.write(
    table(
      ['NAME', 'STATE', 'IP', 'VCPUS', 'MEMORY', 'IMAGE', 'AGE'],
      vms.map((v) => [v.name, v.state, v.guestIp, String(v.vcpus), `${v.memoryMib} MiB`, v.image, humanAge(v.createdAt)]),
    ),
  );
}

function printOne(vm: VmView, json: boolean | undefined): void {
  if (json) printJson(vm);
  else process.stdout.write(`${vm.name}\n`);
}

export function lsCommand(name: string, cli: CliContext): Command {
  return new Command(name)
    .description('list VMs')
    .option('--json', 'print a JSON array')
    .option('-q, --quiet', 'print ids only')
    .action(async (o: { json?: boolean; quiet?: boolean }) => printList(await cli.call<VmView[]>('vm.list', {}), o));
}

export function registerVm(program: Command, cli: CliContext): void {
  const vm = program.command('vm').description('manage VMs');
  vm.command('create')
    .description('create a VM (and start it unless --no-start)')
    .option('--name <name>', 'VM name (also the guest hostname); generated when omitted')
    .requiredOption('--image <image>', 'image name or id prefix')
    .option('--vcpus <n>', 'virtual CPUs', intFlag('--vcpus', 1, MAX_VCPUS))
    .option('--memory <mib>', 'memory in MiB', intFlag('--memory', MIN_MEMORY_MIB, MAX_MEMORY_MIB))
    .option('--disk-size <size>', 'root disk size: bytes or with K/M/G suffix (default: the image size)', sizeFlag('--disk-size'))
    .option('--no-nat', 'no outbound NAT for this VM')
    .option('--no-start', 'create it stopped')
    .option('--wait-ssh', "wait until the guest's sshd answers")
    .option('--wait-ssh-timeout <seconds>', 'how long --wait-ssh waits', intFlag('--wait-ssh-timeout', 1, 3600), 120)
    .option('--json', 'print the VM as JSON')
    .action(async (o: { name?: string; image: string; vcpus?: number; memory?: number; diskSize?: number; nat: boolean; start: boolean; waitSsh?: boolean; waitSshTimeout: number; json?: boolean }) => {
      if (o.name !== undefined) checkName('VM name', o.name);
      const created = await cli.call<VmView>(
        'vm.create',
        { name: o.name, image: o.image, vcpus: o.vcpus, memoryMib: o.memory, diskSizeBytes: o.diskSize, nat: o.nat, start: o.start, waitSsh: o.waitSsh ?? false, waitSshTimeoutSeconds: o.waitSsh ? o.waitSshTimeout : undefined },
        { progress: true },
      );
      printOne(created, o.json);
    });
  vm.addCommand(lsCommand('ls', cli));
  vm.command('show <vm>')
    .description('show one VM')
    .option('--json', 'print a JSON object')
    .action(async (ref: string, o: { json?: boolean }) => {
      const v = await cli.call<VmView>('vm.get', { vm: ref });
      if (o.json) printJson(v);
      else printVm(v);
    });
  vm.command('start <vm>')
    .description('start a stopped VM')
    .option('--json', 'print the VM as JSON')
    .action(async (ref: string, o: { json?: boolean }) => printOne(await cli.call<VmView>('vm.start', { vm: ref }, { progress: true }), o.json));
  vm.command('restart <vm>')
    .description('stop (gracefully) and start a VM')
    .option('--json', 'print the VM as JSON')
    .action(async (ref: string, o: { json?: boolean }) => printOne(await cli.call<VmView>('vm.restart', { vm: ref }, { progress: true }), o.json));
  vm.command('stop <vm>')
    .description('stop a VM: Ctrl-Alt-Del, then a kill after the timeout')
    .option('--timeout <seconds>', 'seconds to wait for the guest to shut down', intFlag('--timeout', 0, 3600), 10)
    .option('--force', 'kill at once, without asking the guest')
    .option('--json', 'print the VM as JSON')
    .action(async (ref: string, o: { timeout: number; force?: boolean; json?: boolean }) =>
      printOne(await cli.call<VmView>('vm.stop', { vm: ref, timeoutSeconds: o.timeout, force: o.force ?? false }, { progress: true }), o.json),
    );
  vm.command('rm <vm>')
    .description('delete a VM and its disk (refuses a running VM without --force)')
    .option('--force', 'stop it first if needed')
    .option('--json', 'print the deleted VM as JSON')
    .action(async (ref: string, o: { force?: boolean; json?: boolean }) => printOne(await cli.call<VmView>('vm.delete', { vm: ref, force: o.force ?? false }, { progress: true }), o.json));
  vm.command('ssh <vm> [command...]')
    .description('open an SSH session in the VM, or run COMMAND (after --)')
    .action(async (ref: string, command: string[]) => {
      const v = await cli.call<VmView>('vm.get', { vm: ref });
      if (v.state !== 'running') throw new CliError(`VM "${v.name}" is ${v.state}; start it with banger vm start ${v.name}`);
      const keyPath = cli.getConfig().paths.sshKey;
      if (!existsSync(keyPath)) throw new CliError(`no SSH key at ${keyPath}; add an image first (banger image add) so that banger makes one`);
      const argv = sshArgv({ keyPath, guestIp: v.guestIp, command, tty: process.stdin.isTTY === true && command.length === 0 });
      const { spawn } = await import('node:child_process');
      const code = await new Promise<number>((resolve, reject) => {
        const child = spawn(argv[0], argv.slice(1), { stdio: 'inherit' });
        child.on('error', (err) => reject(new CliError(`cannot run ssh: ${err.message}; install the OpenSSH client`)));
        child.on('exit', (c, sig) => resolve(c ?? (sig ? 128 + 9 : 1)));
      });
      if (code === 255) throw new CliError(`ssh to ${v.name} (${v.guestIp}) failed; is the guest up? see banger vm logs ${v.name}`, 255);
      process.exitCode = code;
    });
  vm.command('logs <vm>')
    .description("print the guest's serial console")
    .option('-f, --follow', 'keep printing new output')
    .option('-n, --lines <n>', 'lines to print from the end', intFlag('--lines', 1, 1_000_000), 200)
    .action(async (ref: string, o: { follow?: boolean; lines: number }) => {
      const v = await cli.call<VmView>('vm.get', { vm: ref });
      const file = join(vmDir(cli.getConfig().paths, v.id), 'console.log');
      if (!existsSync(file)) {
        if (!o.follow) return;
      } else {
        const lines = tailLines(file, o.lines);
        if (lines.length) process.stdout.write(lines.join('\n') + '\n');
      }
      if (o.follow) {
        const ac = new AbortController();
        process.once('SIGINT', () => ac.abort());
        await followFile(file, (chunk) => process.stdout.write(chunk), ac.signal);
      }
    });
}
