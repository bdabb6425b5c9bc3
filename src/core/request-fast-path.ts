/**
 * A pre-check for the requests nearly every caller sends: plain text messages and the common
 * sampling fields. It answers only "certainly valid"; anything it does not know for sure (a field
 * it does not check, a content array, an out-of-range number) goes to the zod schema, which
 * decides and names the field. zod costs tens of microseconds per request, more than the rest of
 * the routing; a differential property test (`test/request-fast-path.properties.test.ts`) holds
 * the two together: whatever this accepts, the schema accepts.
 *
 * Like zod, it reads the schema's fields by name (a getter or a non-enumerable field is read the
 * same way) and lets any other field pass: the request schema is loose.
 */

const MESSAGE_ROLES: ReadonlySet<unknown> = new Set(['system', 'developer', 'user', 'assistant', 'tool']);

type Check = (value: unknown) => boolean;

/** Top-level fields checked here; a schema field not listed must be absent, or zod decides. */
const FIELD_CHECKS: ReadonlyMap<string, Check> = new Map<string, Check>([
  ['id', isString],
  ['model', isModelSlug],
  ['stream', isBoolean],
  ['max_tokens', isPositiveInteger],
  ['max_completion_tokens', isPositiveInteger],
  ['temperature', (value) => isNumberWithin(value, 0, 2)],
  ['top_p', (value) => isNumberWithin(value, 0, 1)],
  ['seed', (value) => Number.isSafeInteger(value)],
  ['user', isString],
  ['session_id', isString],
]);

/** The message schema's optional fields checked here; `tool_calls` (and any other schema field) goes to zod. */
const MESSAGE_STRING_FIELDS = ['name', 'tool_call_id'] as const;

/** How a schema's fields are checked: built once per schema from its field names. */
export interface RequestFastPath {
  /** Whether `request` is certainly valid; false means "ask the schema". */
  (request: unknown): boolean;
}

/**
 * The pre-check for a request schema with these top-level fields: `maxModels` bounds `models`
 * (OpenRouter's 3 for a wire request; none for `balance`'s client-side chain).
 */
export function requestFastPath(schemaFields: readonly string[], maxModels: number): RequestFastPath {
  const unchecked = schemaFields.filter((field) => field !== 'messages' && field !== 'models' && !FIELD_CHECKS.has(field));
  const checked = [...FIELD_CHECKS];
  return (request) => {
    if (!isPlainRecord(request)) return false;
    for (const field of unchecked) if (request[field] !== undefined) return false;
    for (const [field, check] of checked) {
      const value = request[field];
      if (value !== undefined && !check(value)) return false;
    }
    const models = request['models'];
    if (models !== undefined && !(Array.isArray(models) && models.length > 0 && models.length <= maxModels && allSlugs(models))) {
      return false;
    }
    if (request['model'] === undefined && models === undefined) return false;
    return areCertainlyValidMessages(request['messages']);
  };
}

function areCertainlyValidMessages(messages: unknown): boolean {
  if (!Array.isArray(messages) || messages.length === 0) return false;
  for (const message of messages as unknown[]) {
    if (!isPlainRecord(message) || !MESSAGE_ROLES.has(message['role']) || message['tool_calls'] !== undefined) return false;
    const content = message['content'];
    if (content !== null && typeof content !== 'string') return false;
    for (const field of MESSAGE_STRING_FIELDS) {
      const value = message[field];
      if (value !== undefined && typeof value !== 'string') return false;
    }
  }
  return true;
}

/** An object made by `{}` or `Object.create(null)`: not an array, a class instance or a boxed value. */
function isPlainRecord(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const prototype = Object.getPrototypeOf(value) as unknown;
  return prototype === Object.prototype || prototype === null;
}

/** Every index, holes included (`every` skips holes; zod reads them as `undefined` and refuses them). */
function allSlugs(values: readonly unknown[]): boolean {
  for (let index = 0; index < values.length; index++) if (!isModelSlug(values[index])) return false;
  return true;
}

function isString(value: unknown): boolean {
  return typeof value === 'string';
}

function isBoolean(value: unknown): boolean {
  return typeof value === 'boolean';
}

/** What a model slug must be: anything without whitespace (new slugs appear every week), not empty. */
export const MODEL_SLUG = /^\S+$/;

export function isModelSlug(value: unknown): value is string {
  return typeof value === 'string' && MODEL_SLUG.test(value);
}

function isPositiveInteger(value: unknown): boolean {
  return Number.isSafeInteger(value) && (value as number) > 0;
}

function isNumberWithin(value: unknown, min: number, max: number): boolean {
  return typeof value === 'number' && value >= min && value <= max;
}
