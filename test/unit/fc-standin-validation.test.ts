// The stand-ins' model of Firecracker's API validation (test/fc-standin/validation.ts), checked
// against answers documented in Firecracker's own tests (tests/integration_tests/functional/test_api.py).
import { describe, expect, it } from 'vitest';
import {
  SCHEMAS,
  deserializeBody,
  handleApiRequest,
  newVmmState,
  parseApiRequest,
  type ApiAnswer,
  type ApiRequest,
  type VmmHooks,
} from '../fc-standin/validation.js';

const PREFIX = 'An error occurred when deserializing the json body of a request: ';
const b = (s: string) => Buffer.from(s);
const faultOf = (x: ApiRequest | ApiAnswer) => ('status' in x ? (x.body as { fault_message: string }).fault_message : null);

describe('deserializeBody, serde_json style', () => {
  it('reports a missing field at the column after the closing brace, as Firecracker does', () => {
    // Both literals are from Firecracker's test_api.py (python requests' JSON spacing).
    expect(deserializeBody(SCHEMAS.MachineConfig, b('{"mem_size_mib": 128}'))).toEqual({
      ok: false,
      message: `${PREFIX}missing field \`vcpu_count\` at line 1 column 21.`,
    });
    expect(deserializeBody(SCHEMAS.MachineConfig, b('{"vcpu_count": 2}'))).toEqual({
      ok: false,
      message: `${PREFIX}missing field \`mem_size_mib\` at line 1 column 17.`,
    });
  });

  it('refuses unknown fields, listing the expected ones in declaration order', () => {
    expect(deserializeBody(SCHEMAS.ActionBody, b('{"action": "InstanceStart"}'))).toEqual({
      ok: false,
      message: `${PREFIX}unknown field \`action\`, expected \`action_type\` at line 1 column 9.`,
    });
    const res = deserializeBody(SCHEMAS.BlockDeviceConfig, b('{"drive_id":"rootfs","is_root_device":true,"readonly":true}'));
    expect(res).toEqual({
      ok: false,
      message:
        `${PREFIX}unknown field \`readonly\`, expected one of \`drive_id\`, \`partuuid\`, \`is_root_device\`, \`cache_type\`, ` +
        '`is_read_only`, `path_on_host`, `rate_limiter`, `io_engine`, `socket` at line 1 column 53.',
    });
  });

  it('meets problems in document order: an unknown field before a later missing one', () => {
    const res = deserializeBody(SCHEMAS.MachineConfig, b('{"x": 1}'));
    expect(res.ok === false && res.message).toContain('unknown field `x`');
  });

  it('takes null as absent for Option fields only', () => {
    expect(deserializeBody(SCHEMAS.BootSourceConfig, b('{"kernel_image_path":"/k","initrd_path":null}'))).toEqual({
      ok: true,
      value: { kernel_image_path: '/k' },
    });
    const res = deserializeBody(SCHEMAS.MachineConfig, b('{"vcpu_count":1,"mem_size_mib":128,"smt":null}'));
    expect(res).toEqual({ ok: false, message: `${PREFIX}invalid type: null, expected a boolean at line 1 column 45.` });
  });

  it('checks integer ranges and types like Rust would', () => {
    const bad = (body: string) => {
      const r = deserializeBody(SCHEMAS.MachineConfig, b(body));
      return r.ok ? null : r.message.slice(PREFIX.length);
    };
    expect(bad('{"vcpu_count":256,"mem_size_mib":1}')).toBe('invalid value: integer `256`, expected u8 at line 1 column 17.');
    expect(bad('{"vcpu_count":-1,"mem_size_mib":1}')).toBe('invalid value: integer `-1`, expected u8 at line 1 column 16.');
    expect(bad('{"vcpu_count":2.0,"mem_size_mib":1}')).toBe('invalid type: floating point `2.0`, expected u8 at line 1 column 17.');
    expect(bad('{"vcpu_count":"2","mem_size_mib":1}')).toBe('invalid type: string "2", expected u8 at line 1 column 17.');
    expect(bad('{"vcpu_count":1,"mem_size_mib":1,"huge_pages":"1G"}')).toBe(
      'unknown variant `1G`, expected `None` or `2M` at line 1 column 50.',
    );
  });

  it('validates nested rate limiters: strict RateLimiterConfig, lenient TokenBucketConfig', () => {
    const ok = deserializeBody(
      SCHEMAS.NetworkInterfaceConfig,
      b('{"iface_id":"eth0","host_dev_name":"tap0","rx_rate_limiter":{"ops":{"size":1,"refill_time":2,"extra":[1,{"a":null}]}}}'),
    );
    expect(ok).toEqual({
      ok: true,
      value: { iface_id: 'eth0', host_dev_name: 'tap0', rx_rate_limiter: { ops: { size: 1, refill_time: 2 } } },
    });
    const res = deserializeBody(SCHEMAS.NetworkInterfaceConfig, b('{"iface_id":"eth0","host_dev_name":"tap0","tx_rate_limiter":{"iops":{}}}'));
    expect(res.ok === false && res.message).toContain('unknown field `iops`, expected `bandwidth` or `ops`');
  });

  it('refuses a malformed MAC and malformed JSON with serde_json wording', () => {
    const mac = deserializeBody(SCHEMAS.NetworkInterfaceConfig, b('{"iface_id":"eth0","host_dev_name":"t","guest_mac":"06:00:00"}'));
    expect(mac.ok === false && mac.message).toBe(`${PREFIX}The provided MAC address is invalid. at line 1 column 61.`);
    const comma = deserializeBody(SCHEMAS.ActionBody, b('{"action_type":"InstanceStart",}'));
    expect(comma.ok === false && comma.message).toBe(`${PREFIX}trailing comma at line 1 column 32.`);
    const eof = deserializeBody(SCHEMAS.ActionBody, b('{"action_type":"InstanceStart"'));
    expect(eof.ok === false && eof.message).toBe(`${PREFIX}EOF while parsing an object at line 1 column 30.`);
    const multi = deserializeBody(SCHEMAS.ActionBody, b('{\n  "action_type": 1\n}'));
    expect(multi.ok === false && multi.message).toBe(`${PREFIX}expected value at line 2 column 18.`);
  });
});

describe('parseApiRequest', () => {
  it('routes by method, first path segment and whether a body came', () => {
    expect(parseApiRequest('GET', '/', null)).toEqual({ kind: 'GetInstanceInfo' });
    expect(parseApiRequest('GET', '/version', null)).toEqual({ kind: 'GetVersion' });
    expect(faultOf(parseApiRequest('GET', '/', b('{}')))).toBe('GET request cannot have a body.');
    expect(faultOf(parseApiRequest('PUT', '/boot-source', null))).toBe('Empty PUT request.');
    expect(faultOf(parseApiRequest('PUT', '/nothing', b('{}')))).toBe('Invalid request method and/or path: PUT nothing.');
  });

  it('checks path ids before bodies, and that the body id matches', () => {
    const body = b('{"drive_id":"rootfs","is_root_device":true,"path_on_host":"/d"}');
    expect(faultOf(parseApiRequest('PUT', '/drives', body))).toBe('The ID cannot be empty.');
    expect(faultOf(parseApiRequest('PUT', '/drives/', body))).toBe('The ID cannot be empty.');
    expect(faultOf(parseApiRequest('PUT', '/drives/root.fs', b('not json')))).toBe(
      'API Resource IDs can only contain alphanumeric characters and underscores.',
    );
    expect(faultOf(parseApiRequest('PUT', '/drives/scratch', body))).toBe('The id from the path does not match the id from the body!');
    expect(faultOf(parseApiRequest('PUT', '/network-interfaces/eth0', b('{"iface_id":"eth1","host_dev_name":"t"}')))).toBe(
      'The id from the path [eth0] does not match the id from the body [eth1]!',
    );
    expect(parseApiRequest('PUT', '/drives/rootfs', body)).toEqual({
      kind: 'PutDrive',
      body: { drive_id: 'rootfs', is_root_device: true, path_on_host: '/d' },
    });
  });
});

describe('handleApiRequest', () => {
  const hooks = (refuse: ApiAnswer | null = null): VmmHooks & { ctrlAltDels: number } => {
    const h = { ctrlAltDels: 0, start: () => refuse, ctrlAltDel: () => void h.ctrlAltDels++ };
    return h;
  };
  const put = (kind: 'PutDrive', drive: object): ApiRequest => ({ kind, body: drive as never });

  it('allows configuration before boot only, and Ctrl-Alt-Del after boot only', () => {
    const state = newVmmState('vm1');
    const h = hooks();
    const start: ApiRequest = { kind: 'Action', action: 'InstanceStart' };
    expect(faultOf(handleApiRequest(state, start, h) as ApiAnswer)).toBe('Start microvm error: Cannot start microvm without kernel configuration.');
    expect(faultOf(handleApiRequest(state, { kind: 'Action', action: 'SendCtrlAltDel' }, h) as ApiAnswer)).toBe(
      'The requested operation is not supported before starting the microVM.',
    );
    expect(handleApiRequest(state, { kind: 'PutBootSource', body: { kernel_image_path: '/k' } }, h)).toEqual({ status: 204 });
    expect(handleApiRequest(state, start, h)).toEqual({ status: 204 });
    expect(handleApiRequest(state, { kind: 'GetInstanceInfo' }, h).body).toMatchObject({ id: 'vm1', state: 'Running' });
    expect(faultOf(handleApiRequest(state, { kind: 'PutMachineConfig', body: { vcpu_count: 1, mem_size_mib: 64 } }, h) as ApiAnswer)).toBe(
      'The requested operation is not supported after starting the microVM.',
    );
    expect(faultOf(handleApiRequest(state, put('PutDrive', { drive_id: 'x', is_root_device: false, path_on_host: '/x' }), h) as ApiAnswer)).toBe(
      'PCI is not enabled',
    );
    expect(handleApiRequest(state, { kind: 'Action', action: 'SendCtrlAltDel' }, h)).toEqual({ status: 204 });
    expect(h.ctrlAltDels).toBe(1);
  });

  it('keeps one root drive, lets a drive be replaced, and refuses a drive with no backing', () => {
    const state = newVmmState('vm1');
    const h = hooks();
    expect(handleApiRequest(state, put('PutDrive', { drive_id: 'data', is_root_device: false, path_on_host: '/d' }), h).status).toBe(204);
    expect(handleApiRequest(state, put('PutDrive', { drive_id: 'rootfs', is_root_device: true, path_on_host: '/r' }), h).status).toBe(204);
    expect(faultOf(handleApiRequest(state, put('PutDrive', { drive_id: 'other', is_root_device: true, path_on_host: '/o' }), h) as ApiAnswer)).toBe(
      'Drive config error: A root block device already exists!',
    );
    expect(handleApiRequest(state, put('PutDrive', { drive_id: 'rootfs', is_root_device: true, path_on_host: '/r2' }), h).status).toBe(204);
    expect(state.drives.map((d) => [d.drive_id, d.path_on_host])).toEqual([
      ['rootfs', '/r2'],
      ['data', '/d'],
    ]);
    expect(faultOf(handleApiRequest(state, put('PutDrive', { drive_id: 'empty', is_root_device: false }), h) as ApiAnswer)).toBe(
      'Drive config error: Unable to create the virtio block device: Invalid block config.',
    );
  });

  it('refuses out-of-range machine configurations after parsing', () => {
    const state = newVmmState('vm1');
    const h = hooks();
    const mc = (body: object) => faultOf(handleApiRequest(state, { kind: 'PutMachineConfig', body: body as never }, h) as ApiAnswer);
    expect(mc({ vcpu_count: 33, mem_size_mib: 128 })).toMatch(/^Machine config error: The number of vCPUs must be/);
    expect(mc({ vcpu_count: 3, mem_size_mib: 128, smt: true })).toMatch(/^Machine config error: The number of vCPUs must be/);
    expect(mc({ vcpu_count: 2, mem_size_mib: 0 })).toMatch(/^Machine config error: The memory size \(MiB\) is either 0/);
    expect(handleApiRequest(state, { kind: 'PutMachineConfig', body: { vcpu_count: 2, mem_size_mib: 512 } }, h)).toEqual({ status: 204 });
    expect(handleApiRequest(state, { kind: 'GetMachineConfig' }, h).body).toEqual({
      vcpu_count: 2,
      mem_size_mib: 512,
      smt: false,
      track_dirty_pages: false,
      huge_pages: 'None',
    });
  });
});
