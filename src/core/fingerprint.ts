/**
 * A short, stable, non-reversible name for an API key, shown beside its label in health
 * snapshots and errors so that two keys with the same label can be told apart without ever
 * printing key text. FNV-1a (32 bit) is enough: it identifies, it does not protect.
 */
export function fingerprintOf(key: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return `#${(hash >>> 0).toString(16).padStart(8, '0').slice(0, 6)}`;
}
