/**
 * A stream's tool calls as a whole answer gives them (`message.tool_calls`), from its chunks'
 * `tool_calls` deltas in order:
 * - the deltas of one call share its `index` (a number, or a string of digits); the first brings
 *   its `id`, `type` and function name, the rest pieces of its arguments, which are joined;
 * - a delta at an open call's index with another `id` starts a new call (some adapters number
 *   every call 0);
 * - a delta without an index continues the last call, unless it brings another `id` (a new call:
 *   a whole one, as a JSON answer to a stream request gives);
 * - a later `id`, `type` or name replaces the earlier (some providers repeat them on every delta),
 *   arguments that are not text (an object) replace what came before, and other fields are kept.
 * The result shares nothing with the deltas, which are not changed (they also went out in chunks);
 * fields are copied one by one, never `__proto__` (a body's JSON may hold one as a plain key).
 */
export function assembleToolCalls(deltas: readonly Record<string, unknown>[]): Record<string, unknown>[] {
  const assembly = new ToolCallAssembly();
  for (const delta of deltas) assembly.add(delta);
  return assembly.calls;
}

/**
 * `assembleToolCalls` as the deltas come: each is copied into the calls once, as it is added, so
 * that what its chunk's subscriber later does to it changes nothing here.
 */
export class ToolCallAssembly {
  readonly calls: Record<string, unknown>[] = [];
  private readonly byIndex = new Map<number, Record<string, unknown>>();

  add(delta: Record<string, unknown>): void {
    const { calls, byIndex } = this;
    const { index: rawIndex, function: fn, ...fields } = delta;
    const index = indexOf(rawIndex);
    const id = typeof fields['id'] === 'string' && fields['id'] !== '' ? fields['id'] : undefined;
    let call = index === undefined ? calls.at(-1) : byIndex.get(index);
    // Another id is another call; so is an id after an index-less call that had none (a whole call).
    if (call !== undefined && id !== undefined && call['id'] !== id && (typeof call['id'] === 'string' || index === undefined))
      call = undefined;
    if (call === undefined) {
      call = {};
      calls.push(call);
      if (index !== undefined) byIndex.set(index, call);
    }
    copyFields(call, fields);
    if (!isRecord(fn)) return;
    const { name, arguments: pieceOfArguments, ...functionFields } = fn;
    const target = isRecord(call['function']) ? call['function'] : (call['function'] = { name: '', arguments: '' });
    copyFields(target, functionFields);
    if (typeof name === 'string' && name !== '') target['name'] = name;
    if (typeof pieceOfArguments === 'string') {
      const before = target['arguments'];
      target['arguments'] = typeof before === 'string' ? before + pieceOfArguments : pieceOfArguments;
    } else if (pieceOfArguments !== undefined && pieceOfArguments !== null) {
      target['arguments'] = copyOf(pieceOfArguments);
    }
  }
}

/** A delta's `index` as a number: JSON numbers, and strings of digits some adapters send. */
function indexOf(index: unknown): number | undefined {
  if (typeof index === 'number') return Number.isInteger(index) ? index : undefined;
  return typeof index === 'string' && /^\d+$/.test(index) ? Number(index) : undefined;
}

/** Sets each field of `fields` that holds something on `target`, as a copy. */
function copyFields(target: Record<string, unknown>, fields: Record<string, unknown>): void {
  for (const [name, value] of Object.entries(fields)) {
    if (name !== '__proto__' && value !== undefined && value !== null && value !== '') target[name] = copyOf(value);
  }
}

/**
 * A deep copy of a JSON value (what tool-call deltas hold), so that the caller's and ours share
 * nothing: plain objects and arrays are copied (never a `__proto__` key), anything else a custom
 * transport may put there (a class instance, a function) is kept as it is, never thrown on as
 * `structuredClone` would; past `depth` levels (a cycle) values are kept too.
 */
function copyOf(value: unknown, depth = 32): unknown {
  if (typeof value !== 'object' || value === null || depth === 0) return value;
  if (Array.isArray(value)) return value.map((item: unknown) => copyOf(item, depth - 1));
  const prototype: unknown = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) return value;
  const copy: Record<string, unknown> = {};
  for (const [name, field] of Object.entries(value)) if (name !== '__proto__') copy[name] = copyOf(field, depth - 1);
  return copy;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
