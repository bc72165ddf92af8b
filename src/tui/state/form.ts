// The create-VM form: field values as typed, the focused field, and validation against the
// same rules the daemon applies (name pattern, limits, sizes), so mistakes show before a request.
import { NAME_PATTERN, type Image, type VmView } from '../../core/models.js';
import { MAX_MEMORY_MIB, MAX_VCPUS, MIN_MEMORY_MIB } from '../../core/limits.js';
import { formatSize, parseSize } from '../../core/size.js';
import type { CreateRequest } from '../client.js';

export const FIELDS = ['name', 'image', 'vcpus', 'memory', 'disk', 'nat', 'start'] as const;
export type FieldName = (typeof FIELDS)[number];
export type TextField = 'name' | 'vcpus' | 'memory' | 'disk';
export type ToggleField = 'nat' | 'start';

export interface FormState {
  text: Record<TextField, string>;
  toggles: Record<ToggleField, boolean>;
  imageIndex: number;
  focus: FieldName;
  /** Fields the user changed: their errors show at once; the others after a submit attempt. */
  touched: FieldName[];
  isSubmitAttempted: boolean;
}

export type FormAction =
  | { type: 'reset'; imageIndex?: number }
  | { type: 'focus.move'; delta: number }
  | { type: 'type'; text: string }
  | { type: 'erase' }
  | { type: 'toggle' }
  | { type: 'image.move'; delta: number; count: number }
  | { type: 'submit.attempt' };

export const initialFormState: FormState = {
  text: { name: '', vcpus: '1', memory: '512', disk: '' },
  toggles: { nat: true, start: true },
  imageIndex: 0,
  focus: 'name',
  touched: [],
  isSubmitAttempted: false,
};

export function isTextField(f: FieldName): f is TextField {
  return f === 'name' || f === 'vcpus' || f === 'memory' || f === 'disk';
}

function touch(state: FormState, f: FieldName): FieldName[] {
  return state.touched.includes(f) ? state.touched : [...state.touched, f];
}

export function formReducer(state: FormState, action: FormAction): FormState {
  switch (action.type) {
    case 'reset':
      return { ...initialFormState, imageIndex: action.imageIndex ?? 0 };
    case 'focus.move': {
      const at = FIELDS.indexOf(state.focus);
      const next = (at + action.delta + FIELDS.length) % FIELDS.length;
      return { ...state, focus: FIELDS[next] };
    }
    case 'type': {
      const f = state.focus;
      // Printable characters only: a paste arrives as one string, control keys as escapes.
      const text = [...action.text].filter((c) => c >= ' ' && c !== '\x7f').join('');
      if (!isTextField(f) || text.length === 0) return state;
      return { ...state, text: { ...state.text, [f]: state.text[f] + text }, touched: touch(state, f) };
    }
    case 'erase': {
      const f = state.focus;
      if (!isTextField(f)) return state;
      return { ...state, text: { ...state.text, [f]: [...state.text[f]].slice(0, -1).join('') }, touched: touch(state, f) };
    }
    case 'toggle': {
      const f = state.focus;
      if (f !== 'nat' && f !== 'start') return state;
      return { ...state, toggles: { ...state.toggles, [f]: !state.toggles[f] }, touched: touch(state, f) };
    }
    case 'image.move': {
      if (action.count === 0) return state;
      const next = (state.imageIndex + action.delta + action.count) % action.count;
      return { ...state, imageIndex: next, touched: touch(state, 'image') };
    }
    case 'submit.attempt':
      return { ...state, isSubmitAttempted: true };
  }
}

export interface FormCheck {
  errors: Partial<Record<FieldName, string>>;
  /** The request to send, when there are no errors. */
  request: CreateRequest | null;
}

function wholeNumber(text: string): number | null {
  return /^\d+$/.test(text.trim()) ? Number(text.trim()) : null;
}

/** Checks the form against the images and the VMs that exist; answers errors or a request. */
export function checkForm(state: FormState, images: Image[], vms: Pick<VmView, 'name'>[]): FormCheck {
  const errors: Partial<Record<FieldName, string>> = {};
  const name = state.text.name.trim();
  if (name && !NAME_PATTERN.test(name)) {
    errors.name = 'use a-z, 0-9 and dashes, starting with a letter or digit; at most 63';
  } else if (name && vms.some((v) => v.name === name)) {
    errors.name = `a VM named "${name}" already exists`;
  }
  const image = images[state.imageIndex] as Image | undefined;
  if (!image) errors.image = 'no images yet: add one with banger image add';
  const vcpus = wholeNumber(state.text.vcpus);
  if (vcpus === null || vcpus < 1 || vcpus > MAX_VCPUS) errors.vcpus = `a whole number from 1 to ${MAX_VCPUS}`;
  const memory = wholeNumber(state.text.memory);
  if (memory === null || memory < MIN_MEMORY_MIB || memory > MAX_MEMORY_MIB) {
    errors.memory = `MiB, a whole number from ${MIN_MEMORY_MIB} to ${MAX_MEMORY_MIB}`;
  }
  let disk: number | undefined;
  if (state.text.disk.trim()) {
    try {
      disk = parseSize(state.text.disk);
      if (disk === 0) errors.disk = 'must be larger than 0';
      else if (image && disk < image.rootfsSizeBytes) errors.disk = `at least the image's size, ${formatSize(image.rootfsSizeBytes)}`;
    } catch {
      errors.disk = 'a size like 4G, 512M or 100K (binary units)';
    }
  }
  if (Object.keys(errors).length > 0 || !image || vcpus === null || memory === null) return { errors, request: null };
  return {
    errors,
    request: {
      ...(name ? { name } : {}),
      image: image.id,
      vcpus,
      memoryMib: memory,
      ...(disk !== undefined ? { diskSizeBytes: disk } : {}),
      nat: state.toggles.nat,
      start: state.toggles.start,
    },
  };
}

/** The errors to show now: touched fields at once, every field after a submit attempt. */
export function visibleErrors(state: FormState, check: FormCheck): Partial<Record<FieldName, string>> {
  if (state.isSubmitAttempted) return check.errors;
  const shown: Partial<Record<FieldName, string>> = {};
  for (const f of state.touched) if (check.errors[f]) shown[f] = check.errors[f];
  return shown;
}
