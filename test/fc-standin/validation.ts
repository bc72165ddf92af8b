// Firecracker's API as a Firecracker stand-in must enforce it, modelled on v1.16.1
// (src/firecracker/src/api_server/parsed_request.rs, request/*.rs, vmm/src/rpc_interface.rs).
// Shared by every stand-in: the route table, strict body deserialization with serde_json's
// wording and positions, path-id rules, and the VMM's pre-boot/post-boot rules. No I/O here
// except the start hook a stand-in supplies.
import type {
  ActionType,
  BootSource,
  Drive,
  InstanceInfo,
  MachineConfiguration,
  NetworkInterface,
} from '../../src/firecracker/types.js';
import { existsSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { FIRECRACKER_API_VERSION } from '../../src/firecracker/types.js';

// ---------------------------------------------------------------------------------------------
// Body schemas: each struct as serde derives it (field order = Rust declaration order, which is
// the order of serde's "expected one of" list and of its missing-field check).

/** required: must be present, null refused; option: Option<T>, null or absent is None; default: #[serde(default)], absent ok, null refused. */
type Presence = 'required' | 'option' | 'default';

type FieldType =
  | { t: 'string' }
  | { t: 'bool' }
  | { t: 'uint'; rust: 'u8' | 'u16' | 'u64' | 'usize'; max: bigint }
  | { t: 'enum'; name: string; variants: string[] }
  | { t: 'struct'; schema: StructSchema }
  | { t: 'mac' };

interface FieldSpec {
  name: string;
  type: FieldType;
  presence: Presence;
}

export interface StructSchema {
  /** The Rust type name, used in "expected struct X". */
  name: string;
  denyUnknownFields: boolean;
  fields: FieldSpec[];
}

const str: FieldType = { t: 'string' };
const bool: FieldType = { t: 'bool' };
const u8: FieldType = { t: 'uint', rust: 'u8', max: 255n };
const u16: FieldType = { t: 'uint', rust: 'u16', max: 65535n };
const u64: FieldType = { t: 'uint', rust: 'u64', max: 18446744073709551615n };
const usize = { t: 'uint', rust: 'usize', max: 18446744073709551615n } as const;

const TokenBucketConfig: StructSchema = {
  name: 'TokenBucketConfig',
  denyUnknownFields: false,
  fields: [
    { name: 'size', type: u64, presence: 'required' },
    { name: 'one_time_burst', type: u64, presence: 'option' },
    { name: 'refill_time', type: u64, presence: 'required' },
  ],
};

const RateLimiterConfig: StructSchema = {
  name: 'RateLimiterConfig',
  denyUnknownFields: true,
  fields: [
    { name: 'bandwidth', type: { t: 'struct', schema: TokenBucketConfig }, presence: 'option' },
    { name: 'ops', type: { t: 'struct', schema: TokenBucketConfig }, presence: 'option' },
  ],
};
const rateLimiter: FieldType = { t: 'struct', schema: RateLimiterConfig };

export const SCHEMAS = {
  MachineConfig: {
    name: 'MachineConfig',
    denyUnknownFields: true,
    fields: [
      { name: 'vcpu_count', type: u8, presence: 'required' },
      { name: 'mem_size_mib', type: usize, presence: 'required' },
      { name: 'smt', type: bool, presence: 'default' },
      // x86_64 variant order.
      { name: 'cpu_template', type: { t: 'enum', name: 'StaticCpuTemplate', variants: ['C3', 'T2', 'T2S', 'None', 'T2CL', 'T2A'] }, presence: 'option' },
      { name: 'track_dirty_pages', type: bool, presence: 'default' },
      { name: 'huge_pages', type: { t: 'enum', name: 'HugePageConfig', variants: ['None', '2M'] }, presence: 'default' },
    ],
  },
  BootSourceConfig: {
    name: 'BootSourceConfig',
    denyUnknownFields: true,
    fields: [
      { name: 'kernel_image_path', type: str, presence: 'required' },
      { name: 'initrd_path', type: str, presence: 'option' },
      { name: 'boot_args', type: str, presence: 'option' },
    ],
  },
  BlockDeviceConfig: {
    name: 'BlockDeviceConfig',
    denyUnknownFields: true,
    fields: [
      { name: 'drive_id', type: str, presence: 'required' },
      { name: 'partuuid', type: str, presence: 'option' },
      { name: 'is_root_device', type: bool, presence: 'required' },
      { name: 'cache_type', type: { t: 'enum', name: 'CacheType', variants: ['Unsafe', 'Writeback'] }, presence: 'default' },
      { name: 'is_read_only', type: bool, presence: 'option' },
      { name: 'path_on_host', type: str, presence: 'option' },
      { name: 'rate_limiter', type: rateLimiter, presence: 'option' },
      { name: 'io_engine', type: { t: 'enum', name: 'FileEngineType', variants: ['Async', 'Sync'] }, presence: 'option' },
      { name: 'socket', type: str, presence: 'option' },
    ],
  },
  NetworkInterfaceConfig: {
    name: 'NetworkInterfaceConfig',
    denyUnknownFields: true,
    fields: [
      { name: 'iface_id', type: str, presence: 'required' },
      { name: 'host_dev_name', type: str, presence: 'required' },
      { name: 'guest_mac', type: { t: 'mac' }, presence: 'option' },
      { name: 'mtu', type: u16, presence: 'option' },
      { name: 'rx_rate_limiter', type: rateLimiter, presence: 'option' },
      { name: 'tx_rate_limiter', type: rateLimiter, presence: 'option' },
    ],
  },
  ActionBody: {
    name: 'ActionBody',
    denyUnknownFields: true,
    fields: [
      { name: 'action_type', type: { t: 'enum', name: 'ActionType', variants: ['FlushMetrics', 'InstanceStart', 'SendCtrlAltDel'] }, presence: 'required' },
    ],
  },
} satisfies Record<string, StructSchema>;

// ---------------------------------------------------------------------------------------------
// A serde_json-like deserializer over the raw bytes: the first problem met in document order wins,
// and positions are serde_json's (line, and column = bytes consumed on that line), e.g.
// `{"mem_size_mib": 128}` -> "missing field `vcpu_count` at line 1 column 21".

class SerdeError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
  }
}

/** The serde_json message with its position: "<msg> at line L column C". */
function positioned(buf: Buffer, err: SerdeError): string {
  const upto = Math.min(err.offset, buf.length);
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < upto; i++) {
    if (buf[i] === 0x0a) {
      line++;
      lineStart = i + 1;
    }
  }
  return `${err.message} at line ${line} column ${upto - lineStart}`;
}

/** serde's list of expected names: "`a`", "`a` or `b`", "one of `a`, `b`, `c`". */
function oneOf(names: string[]): string {
  const q = names.map((n) => `\`${n}\``);
  if (q.length === 0) return 'there are no fields';
  if (q.length === 1) return q[0];
  if (q.length === 2) return `${q[0]} or ${q[1]}`;
  return `one of ${q.join(', ')}`;
}

function describeType(type: FieldType): string {
  switch (type.t) {
    case 'string':
    case 'mac':
      return 'a string';
    case 'bool':
      return 'a boolean';
    case 'uint':
      return type.rust;
    case 'enum':
      return `enum ${type.name}`;
    case 'struct':
      return `struct ${type.schema.name}`;
  }
}

function floatText(raw: string): string {
  const v = Number(raw);
  return Number.isInteger(v) && Math.abs(v) < 1e16 ? v.toFixed(1) : String(v);
}

const MAC_RE = /^[0-9a-fA-F]{1,2}(:[0-9a-fA-F]{1,2}){5}$/;

class Deserializer {
  i = 0;
  constructor(readonly b: Buffer) {}

  private ws(): number | undefined {
    while (this.i < this.b.length) {
      const c = this.b[this.i];
      if (c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d) this.i++;
      else return c;
    }
    return undefined;
  }
  /** An error at the cursor (after what was consumed). */
  private err(msg: string): SerdeError {
    return new SerdeError(msg, this.i);
  }
  /** An error at the peeked byte (serde_json's peek_error). */
  private peekErr(msg: string): SerdeError {
    return new SerdeError(msg, Math.min(this.b.length, this.i + 1));
  }

  /** The whole document: one value of the schema, then only whitespace. */
  document(schema: StructSchema): Record<string, unknown> {
    const value = this.struct(schema);
    if (this.ws() !== undefined) throw this.peekErr('trailing characters');
    return value;
  }

  private ident(rest: string): void {
    for (const ch of rest) {
      if (this.i >= this.b.length) throw this.err('EOF while parsing a value');
      if (this.b[this.i] !== ch.charCodeAt(0)) {
        this.i++;
        throw this.err('expected ident');
      }
      this.i++;
    }
  }

  /** A string starting at the opening quote (already peeked). */
  private string(): string {
    const start = this.i;
    this.i++;
    for (;;) {
      if (this.i >= this.b.length) throw this.err('EOF while parsing a string');
      const c = this.b[this.i++];
      if (c === 0x22) break;
      if (c === 0x5c) {
        if (this.i >= this.b.length) throw this.err('EOF while parsing a string');
        const e = this.b[this.i++];
        if (e === 0x75) {
          for (let k = 0; k < 4; k++) {
            if (this.i >= this.b.length) throw this.err('EOF while parsing a string');
            const h = this.b[this.i++];
            if (!/[0-9a-fA-F]/.test(String.fromCharCode(h))) throw this.err('invalid escape');
          }
        } else if (!'"\\/bfnrt'.includes(String.fromCharCode(e))) {
          throw this.err('invalid escape');
        }
      } else if (c < 0x20) {
        throw this.err('control character (\\u0000-\\u001F) found while parsing a string');
      }
    }
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(this.b.subarray(start, this.i));
    } catch {
      throw this.err('invalid unicode code point');
    }
    return JSON.parse(text) as string;
  }

  /** A number token (cursor on '-' or a digit): its raw text and whether it is an integer. */
  private number(): { raw: string; integer: boolean } {
    const start = this.i;
    const digit = () => this.i < this.b.length && this.b[this.i] >= 0x30 && this.b[this.i] <= 0x39;
    if (this.b[this.i] === 0x2d) this.i++;
    if (!digit()) throw this.i >= this.b.length ? this.err('EOF while parsing a value') : this.peekErr('invalid number');
    if (this.b[this.i] === 0x30) {
      this.i++;
      if (digit()) throw this.peekErr('invalid number');
    } else {
      while (digit()) this.i++;
    }
    let integer = true;
    if (this.b[this.i] === 0x2e) {
      integer = false;
      this.i++;
      if (!digit()) throw this.i >= this.b.length ? this.err('EOF while parsing a value') : this.peekErr('invalid number');
      while (digit()) this.i++;
    }
    if (this.b[this.i] === 0x65 || this.b[this.i] === 0x45) {
      integer = false;
      this.i++;
      if (this.b[this.i] === 0x2b || this.b[this.i] === 0x2d) this.i++;
      if (!digit()) throw this.i >= this.b.length ? this.err('EOF while parsing a value') : this.peekErr('invalid number');
      while (digit()) this.i++;
    }
    const raw = this.b.toString('latin1', start, this.i);
    // serde_json reads integers beyond u64/i64 as floats.
    if (integer) {
      const v = BigInt(raw);
      if (v > 18446744073709551615n || v < -9223372036854775808n) integer = false;
    }
    return { raw, integer };
  }

  /** serde_json's peek_invalid_type: consumes a scalar and names it; [ and { are named unconsumed. */
  private invalidType(expected: string): SerdeError {
    const c = this.ws();
    let what: string;
    if (c === undefined) return this.peekErr('EOF while parsing a value');
    if (c === 0x6e) {
      this.i++;
      this.ident('ull');
      what = 'null';
    } else if (c === 0x74) {
      this.i++;
      this.ident('rue');
      what = 'boolean `true`';
    } else if (c === 0x66) {
      this.i++;
      this.ident('alse');
      what = 'boolean `false`';
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      const n = this.number();
      what = n.integer ? `integer \`${n.raw}\`` : `floating point \`${floatText(n.raw)}\``;
    } else if (c === 0x22) {
      what = `string ${JSON.stringify(this.string())}`;
    } else if (c === 0x5b) {
      what = 'sequence';
    } else if (c === 0x7b) {
      what = 'map';
    } else {
      return this.peekErr('expected value');
    }
    return this.err(`invalid type: ${what}, expected ${expected}`);
  }

  /** Skips any value (serde's IgnoredAny, for unknown fields of lenient structs). */
  private skip(): void {
    const c = this.ws();
    if (c === undefined) throw this.peekErr('EOF while parsing a value');
    if (c === 0x22) this.string();
    else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) this.number();
    else if (c === 0x6e) (this.i++, this.ident('ull'));
    else if (c === 0x74) (this.i++, this.ident('rue'));
    else if (c === 0x66) (this.i++, this.ident('alse'));
    else if (c === 0x5b || c === 0x7b) {
      const isObject = c === 0x7b;
      const close = isObject ? 0x7d : 0x5d;
      this.i++;
      for (let first = true; ; first = false) {
        let p = this.ws();
        if (p === undefined) throw this.peekErr(isObject ? 'EOF while parsing an object' : 'EOF while parsing a list');
        if (p === close) {
          this.i++;
          return;
        }
        if (!first) {
          if (p !== 0x2c) throw this.peekErr(isObject ? 'expected `,` or `}`' : 'expected `,` or `]`');
          this.i++;
          p = this.ws();
          if (p === close) throw this.peekErr('trailing comma');
        }
        if (isObject) {
          if (p !== 0x22) throw p === undefined ? this.peekErr('EOF while parsing a value') : this.peekErr('key must be a string');
          this.string();
          this.colon();
        }
        this.skip();
      }
    } else throw this.peekErr('expected value');
  }

  private colon(): void {
    const c = this.ws();
    if (c === 0x3a) this.i++;
    else if (c === undefined) throw this.peekErr('EOF while parsing an object');
    else throw this.peekErr('expected `:`');
  }

  private value(type: FieldType): unknown {
    const c = this.ws();
    switch (type.t) {
      case 'string':
      case 'mac': {
        if (c !== 0x22) throw this.invalidType(describeType(type));
        const s = this.string();
        if (type.t === 'mac' && !MAC_RE.test(s)) throw this.err('The provided MAC address is invalid.');
        return s;
      }
      case 'bool':
        if (c === 0x74) return this.i++, this.ident('rue'), true;
        if (c === 0x66) return this.i++, this.ident('alse'), false;
        throw this.invalidType('a boolean');
      case 'uint': {
        if (c !== 0x2d && !(c !== undefined && c >= 0x30 && c <= 0x39)) throw this.invalidType(type.rust);
        const n = this.number();
        if (!n.integer) throw this.err(`invalid type: floating point \`${floatText(n.raw)}\`, expected ${type.rust}`);
        const v = BigInt(n.raw);
        if (v < 0n || v > type.max) throw this.err(`invalid value: integer \`${n.raw}\`, expected ${type.rust}`);
        return Number(v);
      }
      case 'enum': {
        if (c === undefined) throw this.peekErr('EOF while parsing a value');
        if (c !== 0x22) throw this.peekErr('expected value');
        const s = this.string();
        if (!type.variants.includes(s)) throw this.err(`unknown variant \`${s}\`, expected ${oneOf(type.variants)}`);
        return s;
      }
      case 'struct':
        return this.struct(type.schema);
    }
  }

  private struct(schema: StructSchema): Record<string, unknown> {
    const c = this.ws();
    if (c !== 0x7b) {
      if (c === undefined) throw this.peekErr('EOF while parsing a value');
      throw this.invalidType(`struct ${schema.name}`);
    }
    this.i++;
    const out: Record<string, unknown> = {};
    let first = true;
    for (;;) {
      let p = this.ws();
      if (p === 0x7d) break;
      if (p === undefined) throw this.peekErr('EOF while parsing an object');
      if (!first) {
        if (p !== 0x2c) throw this.peekErr('expected `,` or `}`');
        this.i++;
        p = this.ws();
        if (p === 0x7d) throw this.peekErr('trailing comma');
        if (p === undefined) throw this.peekErr('EOF while parsing a value');
      }
      first = false;
      if (p !== 0x22) throw this.peekErr('key must be a string');
      const key = this.string();
      const field = schema.fields.find((f) => f.name === key);
      if (!field) {
        if (schema.denyUnknownFields) {
          throw this.err(`unknown field \`${key}\`, expected ${oneOf(schema.fields.map((f) => f.name))}`);
        }
        this.colon();
        this.skip();
        continue;
      }
      if (key in out) throw this.err(`duplicate field \`${key}\``);
      this.colon();
      if (field.presence === 'option' && this.ws() === 0x6e) {
        this.i++;
        this.ident('ull');
        out[key] = null;
        continue;
      }
      out[key] = this.value(field.type);
    }
    // serde checks for missing fields once the map is done; the position is after its "}".
    this.i++;
    const missing = schema.fields.find((f) => f.presence === 'required' && !(f.name in out));
    if (missing) throw this.err(`missing field \`${missing.name}\``);
    for (const k of Object.keys(out)) if (out[k] === null) delete out[k];
    return out;
  }
}

/**
 * Deserializes a request body as Firecracker does; the error is Firecracker's fault_message:
 * "An error occurred when deserializing the json body of a request: unknown field `x`, expected ... at line 1 column 6."
 */
export function deserializeBody<T>(schema: StructSchema, body: Buffer): { ok: true; value: T } | { ok: false; message: string } {
  try {
    return { ok: true, value: new Deserializer(body).document(schema) as T };
  } catch (err) {
    if (!(err instanceof SerdeError)) throw err;
    return { ok: false, message: `An error occurred when deserializing the json body of a request: ${positioned(body, err)}.` };
  }
}

// ---------------------------------------------------------------------------------------------
// Routes: Firecracker dispatches on the method, the first path segment and whether a body came
// (micro_http: Content-Length 0 or absent, chunked included, is no body).

export interface ApiAnswer {
  status: number;
  /** JSON body; absent for 204. */
  body?: unknown;
}

export function fault(status: number, message: string): ApiAnswer {
  return { status, body: { fault_message: message } };
}

export type ApiRequest =
  | { kind: 'GetInstanceInfo' }
  | { kind: 'GetVersion' }
  | { kind: 'GetMachineConfig' }
  | { kind: 'PutMachineConfig'; body: MachineConfiguration }
  | { kind: 'PutBootSource'; body: BootSource }
  | { kind: 'PutDrive'; body: Drive }
  | { kind: 'PutNetworkInterface'; body: NetworkInterface }
  | { kind: 'Action'; action: ActionType };

/** Endpoints of the real API that stand-ins do not implement (answered with a clear 400). */
const UNIMPLEMENTED = new Set([
  'balloon',
  'cpu-config',
  'pmem',
  'logger',
  'serial',
  'metrics',
  'mmds',
  'snapshot',
  'vsock',
  'entropy',
  'hotplug',
  'vm',
]);

/** Firecracker's checked_id, narrowed to ASCII: non-empty, alphanumerics and "_" only. */
function checkId(id: string | undefined): string | ApiAnswer {
  if (id === undefined || id === '') return fault(400, 'The ID cannot be empty.');
  if (!/^[A-Za-z0-9_]+$/.test(id)) return fault(400, 'API Resource IDs can only contain alphanumeric characters and underscores.');
  return id;
}

/** Parses one request into an ApiRequest, or the answer Firecracker gives before reaching the VMM. */
export function parseApiRequest(method: string, url: string, body: Buffer | null): ApiRequest | ApiAnswer {
  const hasBody = body !== null && body.length > 0;
  const pathOnly = url.split('?')[0];
  const tokens = pathOnly.replace(/^\/+/, '').split('/');
  if (tokens.length > 0 && tokens[tokens.length - 1] === '') tokens.pop();
  const head = tokens[0] ?? '';
  const sub = tokens[1];
  const m = method.toUpperCase();

  const parse = <T>(schema: StructSchema): T | ApiAnswer => {
    const res = deserializeBody<T>(schema, body as Buffer);
    return res.ok ? res.value : fault(400, res.message);
  };
  const isAnswer = (x: unknown): x is ApiAnswer => typeof x === 'object' && x !== null && 'status' in x && typeof (x as ApiAnswer).status === 'number';

  if (m === 'GET' && !hasBody) {
    if (head === '') return { kind: 'GetInstanceInfo' };
    if (head === 'version') return { kind: 'GetVersion' };
    if (head === 'machine-config') return { kind: 'GetMachineConfig' };
  }
  if (m === 'GET' && hasBody) return fault(400, 'GET request cannot have a body.');
  if (m === 'PUT' && hasBody) {
    switch (head) {
      case 'actions': {
        const b = parse<{ action_type: ActionType }>(SCHEMAS.ActionBody);
        return isAnswer(b) ? b : { kind: 'Action', action: b.action_type };
      }
      case 'boot-source': {
        const b = parse<BootSource>(SCHEMAS.BootSourceConfig);
        return isAnswer(b) ? b : { kind: 'PutBootSource', body: b };
      }
      case 'machine-config': {
        const b = parse<MachineConfiguration>(SCHEMAS.MachineConfig);
        return isAnswer(b) ? b : { kind: 'PutMachineConfig', body: b };
      }
      case 'drives': {
        const id = checkId(sub);
        if (typeof id !== 'string') return id;
        const b = parse<Drive>(SCHEMAS.BlockDeviceConfig);
        if (isAnswer(b)) return b;
        if (b.drive_id !== id) return fault(400, 'The id from the path does not match the id from the body!');
        return { kind: 'PutDrive', body: b };
      }
      case 'network-interfaces': {
        const id = checkId(sub);
        if (typeof id !== 'string') return id;
        const b = parse<NetworkInterface>(SCHEMAS.NetworkInterfaceConfig);
        if (isAnswer(b)) return b;
        if (b.iface_id !== id) return fault(400, `The id from the path [${id}] does not match the id from the body [${b.iface_id}]!`);
        return { kind: 'PutNetworkInterface', body: b };
      }
    }
  }
  if (m === 'PUT' && !hasBody) return fault(400, 'Empty PUT request.');
  if (m === 'PATCH' && !hasBody) return fault(400, 'Empty PATCH request.');
  if (m === 'DELETE' && hasBody) return fault(400, 'Empty Delete request.');
  const unplugOrPatch = (m === 'PATCH' || m === 'DELETE') && ['drives', 'machine-config', 'network-interfaces'].includes(head);
  if (UNIMPLEMENTED.has(head) || unplugOrPatch) {
    return fault(400, `fc-standin: ${m} /${tokens.join('/')} exists in Firecracker but is not implemented by this stand-in.`);
  }
  return fault(400, `Invalid request method and/or path: ${m} ${head}.`);
}

// ---------------------------------------------------------------------------------------------
// The VMM's side: configuration state, its checks, and what is allowed before and after boot.

export interface VmmState {
  id: string;
  started: boolean;
  machineConfig: Required<Pick<MachineConfiguration, 'vcpu_count' | 'mem_size_mib' | 'smt' | 'track_dirty_pages' | 'huge_pages'>> &
    Pick<MachineConfiguration, 'cpu_template'>;
  bootSource: BootSource | null;
  /** In Firecracker's order: the root device first. */
  drives: Drive[];
  networkInterfaces: NetworkInterface[];
}

export function newVmmState(id: string): VmmState {
  return {
    id,
    started: false,
    machineConfig: { vcpu_count: 1, mem_size_mib: 128, smt: false, track_dirty_pages: false, huge_pages: 'None' },
    bootSource: null,
    drives: [],
    networkInterfaces: [],
  };
}

const PRE_BOOT_ONLY = 'The requested operation is not supported after starting the microVM.';
const POST_BOOT_ONLY = 'The requested operation is not supported before starting the microVM.';

export interface VmmHooks {
  /** Called for InstanceStart once Firecracker's own checks pass; a fault refuses the start. */
  start: (state: VmmState) => ApiAnswer | null;
  /** Called for SendCtrlAltDel after boot. */
  ctrlAltDel: (state: VmmState) => void;
}

/** Applies a parsed request to the state as Firecracker's VMM would, answering as it does. */
export function handleApiRequest(state: VmmState, req: ApiRequest, hooks: VmmHooks): ApiAnswer {
  switch (req.kind) {
    case 'GetInstanceInfo': {
      const info: InstanceInfo = {
        id: state.id,
        state: state.started ? 'Running' : 'Not started',
        vmm_version: FIRECRACKER_API_VERSION,
        app_name: 'Firecracker',
      };
      return { status: 200, body: info };
    }
    case 'GetVersion':
      return { status: 200, body: { firecracker_version: FIRECRACKER_API_VERSION } };
    case 'GetMachineConfig': {
      const mc = state.machineConfig;
      return {
        status: 200,
        body: {
          vcpu_count: mc.vcpu_count,
          mem_size_mib: mc.mem_size_mib,
          smt: mc.smt,
          ...(mc.cpu_template !== undefined ? { cpu_template: mc.cpu_template } : {}),
          track_dirty_pages: mc.track_dirty_pages,
          huge_pages: mc.huge_pages,
        },
      };
    }
    case 'PutMachineConfig': {
      if (state.started) return fault(400, PRE_BOOT_ONLY);
      const b = req.body;
      const smt = b.smt ?? false;
      const hugePages = b.huge_pages ?? 'None';
      if (b.vcpu_count === 0 || b.vcpu_count > 32 || (smt && b.vcpu_count > 1 && b.vcpu_count % 2 === 1)) {
        return fault(400, 'Machine config error: The number of vCPUs must be greater than 0, less than 32 and must be 1 or an even number if SMT is enabled.');
      }
      if (b.mem_size_mib === 0 || (hugePages === '2M' && b.mem_size_mib % 2 !== 0)) {
        return fault(400, 'Machine config error: The memory size (MiB) is either 0, or not a multiple of the configured page size.');
      }
      state.machineConfig = {
        vcpu_count: b.vcpu_count,
        mem_size_mib: b.mem_size_mib,
        smt,
        track_dirty_pages: b.track_dirty_pages ?? false,
        huge_pages: hugePages,
        ...(b.cpu_template !== undefined ? { cpu_template: b.cpu_template } : {}),
      };
      return { status: 204 };
    }
    case 'PutBootSource':
      if (state.started) return fault(400, PRE_BOOT_ONLY);
      state.bootSource = req.body;
      return { status: 204 };
    case 'PutDrive': {
      // After boot a PUT is a hotplug, which needs Firecracker's --enable-pci; stand-ins never have it.
      if (state.started) return fault(400, 'PCI is not enabled');
      const d = req.body;
      const hasPath = d.path_on_host !== undefined && d.socket === undefined;
      const hasSocket = d.socket !== undefined && d.path_on_host === undefined;
      if (!hasPath && !hasSocket) return fault(400, 'Drive config error: Unable to create the virtio block device: Invalid block config.');
      const others = state.drives.filter((x) => x.drive_id !== d.drive_id);
      if (d.is_root_device && others.some((x) => x.is_root_device)) {
        return fault(400, 'Drive config error: A root block device already exists!');
      }
      state.drives = d.is_root_device ? [d, ...others] : [...others, d];
      return { status: 204 };
    }
    case 'PutNetworkInterface': {
      if (state.started) return fault(400, 'PCI is not enabled');
      const n = req.body;
      const others = state.networkInterfaces.filter((x) => x.iface_id !== n.iface_id);
      const mac = n.guest_mac?.toLowerCase();
      if (mac !== undefined && others.some((x) => x.guest_mac?.toLowerCase() === mac)) {
        return fault(400, `Network config error: The MAC address is already in use: ${mac}`);
      }
      state.networkInterfaces = [...others, n];
      return { status: 204 };
    }
    case 'Action':
      switch (req.action) {
        case 'InstanceStart': {
          if (state.started) return fault(400, PRE_BOOT_ONLY);
          if (!state.bootSource) return fault(400, 'Start microvm error: Cannot start microvm without kernel configuration.');
          const refused = hooks.start(state);
          if (refused) return refused;
          state.started = true;
          return { status: 204 };
        }
        case 'SendCtrlAltDel':
          if (!state.started) return fault(400, POST_BOOT_ONLY);
          hooks.ctrlAltDel(state);
          return { status: 204 };
        case 'FlushMetrics':
          if (!state.started) return fault(400, POST_BOOT_ONLY);
          return { status: 204 };
      }
  }
}

/**
 * InstanceStart's host checks, with Firecracker's messages: the files it would open and the TAPs
 * it would attach (real Firecracker checks each at its own PUT; the stand-ins check them here).
 */
export function checkHost(s: VmmState): ApiAnswer | null {
  const boot = s.bootSource!;
  if (!existsSync(boot.kernel_image_path)) {
    return fault(400, `Boot source error: The kernel file cannot be opened: No such file or directory (os error 2): ${boot.kernel_image_path}`);
  }
  if (boot.initrd_path !== undefined && !existsSync(boot.initrd_path)) {
    return fault(
      400,
      `Boot source error: The initrd file cannot be opened due to invalid path or invalid permissions. No such file or directory (os error 2): ${boot.initrd_path}`,
    );
  }
  for (const d of s.drives) {
    if (d.path_on_host !== undefined && !existsSync(d.path_on_host)) {
      return fault(
        400,
        `Drive config error: Unable to create the virtio block device: Virtio backend error: Error manipulating the backing file: No such file or directory (os error 2) ${d.path_on_host}`,
      );
    }
  }
  for (const n of s.networkInterfaces) {
    if (!existsSync(`/sys/class/net/${n.host_dev_name}`)) {
      return fault(400, `Network config error: Cannot open/create the tap device: Open tap device failed: No such device (os error 19): ${n.host_dev_name}`);
    }
  }
  return null;
}

/**
 * Firecracker's command line as the stand-ins take it: `--api-sock PATH --id ID` (and `--version`,
 * which prints Firecracker's version line and exits). A bad one prints usage and exits 1.
 */
export function parseStandinArgs(prog: string, argv: string[]): { apiSock: string; id: string } {
  const usage = (message: string): never => {
    process.stderr.write(`${prog}: ${message}\nusage: ${prog} --api-sock PATH --id ID\n`);
    process.exit(1);
  };
  let apiSock = '/run/firecracker.socket';
  let id = 'anonymous-instance';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--version') {
      process.stdout.write(`Firecracker v${FIRECRACKER_API_VERSION}\n\n`);
      process.exit(0);
    }
    if (a !== '--api-sock' && a !== '--id') usage(`unexpected argument '${a}'`);
    const value = argv[++i];
    if (value === undefined) usage(`${a} needs a value`);
    if (a === '--api-sock') apiSock = value;
    else id = value;
  }
  return { apiSock, id };
}

/** Writes an answer as Firecracker does: Content-Length always, JSON only when there is a body. */
export function sendAnswer(res: ServerResponse, answer: ApiAnswer): void {
  res.setHeader('Server', 'Firecracker API');
  if (answer.body === undefined) {
    res.writeHead(answer.status, { 'Content-Length': '0' });
    res.end();
    return;
  }
  const payload = Buffer.from(JSON.stringify(answer.body));
  res.writeHead(answer.status, { 'Content-Type': 'application/json', 'Content-Length': String(payload.length) });
  res.end(payload);
}
