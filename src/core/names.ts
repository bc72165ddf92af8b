// Ids and generated names.
import { randomBytes } from 'node:crypto';

export function newId(): string {
  return randomBytes(6).toString('hex');
}

const ADJECTIVES = ['brave', 'calm', 'eager', 'fancy', 'gentle', 'happy', 'jolly', 'keen', 'lively', 'merry', 'nimble', 'proud', 'quick', 'quiet', 'rapid', 'shiny', 'sunny', 'swift', 'tidy', 'witty'];
const NOUNS = ['otter', 'falcon', 'badger', 'heron', 'lynx', 'marten', 'newt', 'osprey', 'panda', 'quail', 'raven', 'seal', 'tapir', 'urchin', 'vole', 'walrus', 'yak', 'zebra', 'gecko', 'ibis'];

/** A readable name like "swift-otter-3fa1" that is not in taken. */
export function generateName(taken: (name: string) => boolean): string {
  for (;;) {
    const b = randomBytes(4);
    const n = `${ADJECTIVES[b[0] % ADJECTIVES.length]}-${NOUNS[b[1] % NOUNS.length]}-${b.readUInt16BE(2).toString(16).padStart(4, '0')}`;
    if (!taken(n)) return n;
  }
}
