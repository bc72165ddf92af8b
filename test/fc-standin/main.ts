// A Firecracker stand-in process: `fc-standin --api-sock PATH --id ID` serves Firecracker's API
// (validated by ./validation.ts) on PATH and "boots" by printing a banner to stdout, its serial
// console. Behaviour switches, read from the environment:
//   FC_STANDIN_RECORD=<file>        append every request as an NDJSON line {method, path, body}
//   FC_STANDIN_CTRLALTDEL=exit|ignore  SendCtrlAltDel exits 0 shortly after (default) or does nothing
//   FC_STANDIN_CRASH_AFTER_MS=<n>   exit 3, n ms after InstanceStart
//   FC_STANDIN_FAIL=<METHOD> <path> answer that request 400 with a fault_message
//   FC_STANDIN_NO_SOCKET=1          never create the API socket
//   FC_STANDIN_CHATTY=1             print console output continuously once started
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { appendFileSync, existsSync, writeSync } from 'node:fs';
import { FIRECRACKER_API_VERSION } from '../../src/firecracker/types.js';
import { checkHost, fault, handleApiRequest, newVmmState, parseApiRequest, parseStandinArgs, sendAnswer, type VmmState } from './validation.js';

/** Console output: synchronous, so it is in the file before any exit. */
function consoleLine(text: string): void {
  writeSync(1, `${text}\n`);
}

const env = process.env;
const { apiSock, id } = parseStandinArgs('fc-standin', process.argv.slice(2));
const state: VmmState = newVmmState(id);

consoleLine(`Running Firecracker v${FIRECRACKER_API_VERSION} (fc-standin, pid ${process.pid})`);

function printBanner(s: VmmState): void {
  const args = s.bootSource?.boot_args ?? '';
  const hostname = /(?:^|\s)systemd\.hostname=(\S+)/.exec(args)?.[1] ?? 'localhost';
  const root = s.drives.find((d) => d.is_root_device);
  consoleLine('[    0.000000] Linux version 6.1.0-fc-standin (fc-standin@banger) #1 SMP PREEMPT_DYNAMIC');
  consoleLine(`[    0.000000] Command line: ${args}`);
  consoleLine(`[    0.004000] smpboot: Allowing ${s.machineConfig.vcpu_count} CPUs, ${s.machineConfig.mem_size_mib} MiB RAM`);
  if (root) consoleLine(`[    0.120000] virtio_blk virtio0: [vda] ${root.is_read_only ? 'read-only ' : ''}disk ${root.path_on_host ?? root.socket}`);
  for (const n of s.networkInterfaces) consoleLine(`[    0.130000] virtio_net: ${n.iface_id} ${n.guest_mac ?? '(random mac)'} on ${n.host_dev_name}`);
  consoleLine('[    0.300000] Run /sbin/init as init process');
  consoleLine(`Welcome to fc-standin (vm ${s.id})`);
  consoleLine(`${hostname} login: `);
}

function afterStart(): void {
  const crashAfter = env.FC_STANDIN_CRASH_AFTER_MS;
  if (crashAfter !== undefined && crashAfter !== '') {
    setTimeout(() => {
      consoleLine('[   10.000000] Kernel panic - not syncing: fc-standin crash requested by FC_STANDIN_CRASH_AFTER_MS');
      process.exit(3);
    }, Number(crashAfter));
  }
  if (env.FC_STANDIN_CHATTY === '1') {
    let n = 0;
    setInterval(() => {
      for (let k = 0; k < 100; k++) {
        n++;
        consoleLine(`[ chatty ${String(n).padStart(9, '0')}] ${'x'.repeat(80)}`);
      }
    }, 5);
  }
}

const hooks = {
  start: (s: VmmState) => {
    const refused = checkHost(s);
    if (refused) return refused;
    printBanner(s);
    setImmediate(afterStart);
    return null;
  },
  ctrlAltDel: () => {
    if ((env.FC_STANDIN_CTRLALTDEL ?? 'exit') === 'ignore') return;
    setTimeout(() => {
      consoleLine('reboot: Restarting system');
      process.exit(0);
    }, 100);
  },
};

function record(method: string, path: string, body: Buffer | null): void {
  const file = env.FC_STANDIN_RECORD;
  if (!file) return;
  let parsed: unknown = null;
  if (body !== null && body.length > 0) {
    const text = body.toString('utf8');
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
  }
  appendFileSync(file, `${JSON.stringify({ method, path, body: parsed })}\n`);
}


function serve(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    // micro_http takes the body from Content-Length only: a chunked body is no body at all.
    const declared = Number(req.headers['content-length'] ?? '0');
    const body = declared > 0 ? Buffer.concat(chunks) : null;
    record(method, path, body);
    const injected = env.FC_STANDIN_FAIL;
    if (injected && injected === `${method} ${path}`) {
      sendAnswer(res, fault(400, `fc-standin: injected failure for ${injected} (FC_STANDIN_FAIL)`));
      return;
    }
    const parsed = parseApiRequest(method, path, body);
    sendAnswer(res, 'status' in parsed ? parsed : handleApiRequest(state, parsed, hooks));
  });
}

if (existsSync(apiSock)) {
  process.stderr.write(`fc-standin: Failed to open the API socket at: ${apiSock}. Check that it is not already used.\n`);
  process.exit(1);
}

if (env.FC_STANDIN_NO_SOCKET === '1') {
  consoleLine('fc-standin: FC_STANDIN_NO_SOCKET=1, not creating the API socket');
  setInterval(() => {}, 1 << 30);
} else {
  const server = createServer(serve);
  server.on('error', (err) => {
    process.stderr.write(`fc-standin: API server: ${err.message}\n`);
    process.exit(1);
  });
  server.listen(apiSock);
}
