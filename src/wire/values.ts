/**
 * Small, total readers for untrusted wire data. Bodies come from the network, a proxy or a fixture
 * and may be anything: these helpers never throw, they answer `undefined` instead.
 */

export type JsonRecord = Record<string, unknown>;

export function isRecord(value: unknown): value is JsonRecord {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A body as received: a JSON string is parsed, an object is kept, anything else is kept as is. */
export function parseJsonBody(body: unknown): unknown {
  if (typeof body !== 'string') return body;
  const text = body.trim();
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return body;
  }
}

export function stringField(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** A finite number, or a numeric string (headers and some bodies send numbers as text). */
export function numberField(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(value)) return Number(value);
  return undefined;
}

/** A count (tokens): a non-negative safe integer, so that sums of counts stay exact and finite. */
export function countField(value: unknown): number | undefined {
  const count = numberField(value);
  return count !== undefined && Number.isSafeInteger(count) && count >= 0 ? count : undefined;
}

/** An amount that cannot be negative (a cost): non-negative and finite. */
export function nonNegativeField(value: unknown): number | undefined {
  const amount = numberField(value);
  return amount !== undefined && amount >= 0 ? amount : undefined;
}

export function recordField(value: unknown): JsonRecord | undefined {
  return isRecord(value) ? value : undefined;
}
