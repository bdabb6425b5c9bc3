/**
 * Header access that works the same for a fetch `Headers`, a plain record (fixtures, headers copied
 * into an error body) and a lookup function. Header names are case-insensitive on the wire.
 */

export type HeaderLookup = (name: string) => string | null | undefined;

export type HeaderSource = HeaderLookup | { get(name: string): string | null } | Readonly<Record<string, unknown>> | null | undefined;

export function toHeaderLookup(source: HeaderSource): HeaderLookup {
  if (source === null || source === undefined) return () => undefined;
  if (typeof source === 'function') return source;
  const get = (source as { get?: unknown }).get;
  if (typeof get === 'function') {
    return (name) => (get as (name: string) => string | null).call(source, name);
  }
  const record = source as Readonly<Record<string, unknown>>;
  return (name) => {
    const wanted = name.toLowerCase();
    for (const [key, value] of Object.entries(record)) {
      if (key.toLowerCase() === wanted) return typeof value === 'string' ? value : typeof value === 'number' ? String(value) : undefined;
    }
    return undefined;
  };
}
