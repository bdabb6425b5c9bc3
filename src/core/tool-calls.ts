/**
 * A stream's tool calls as a whole answer gives them (`message.tool_calls`), from its chunks'
 * `tool_calls` deltas in order: the deltas of one call share its `index`; the first brings its
 * `id`, `type` and function name, the rest pieces of its arguments, which are joined. A later
 * `id`, `type` or name replaces the earlier (some providers repeat them on every delta), and other
 * fields are kept. A delta without a numeric `index` (a whole call, as a JSON answer to a stream
 * request gives) is a call of its own. The deltas are not changed: they also went out in chunks.
 * Fields are copied one by one, never `__proto__` (a body's JSON may hold one as a plain key).
 */
export function assembleToolCalls(deltas: readonly Record<string, unknown>[]): Record<string, unknown>[] {
  const calls: Record<string, unknown>[] = [];
  const byIndex = new Map<number, Record<string, unknown>>();
  for (const delta of deltas) {
    const { index, function: fn, ...fields } = delta;
    let call = typeof index === 'number' ? byIndex.get(index) : undefined;
    if (call === undefined) {
      call = {};
      calls.push(call);
      if (typeof index === 'number') byIndex.set(index, call);
    }
    copyFields(call, fields);
    if (!isRecord(fn)) continue;
    const { name, arguments: pieceOfArguments, ...functionFields } = fn;
    const target = isRecord(call['function']) ? call['function'] : (call['function'] = { name: '', arguments: '' });
    copyFields(target, functionFields);
    if (typeof name === 'string' && name !== '') target['name'] = name;
    if (typeof pieceOfArguments === 'string') {
      const before = target['arguments'];
      target['arguments'] = typeof before === 'string' ? before + pieceOfArguments : pieceOfArguments;
    }
  }
  return calls;
}

/** Sets each field of `fields` that holds something on `target`. */
function copyFields(target: Record<string, unknown>, fields: Record<string, unknown>): void {
  for (const [name, value] of Object.entries(fields)) {
    if (name !== '__proto__' && value !== undefined && value !== null && value !== '') target[name] = value;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
