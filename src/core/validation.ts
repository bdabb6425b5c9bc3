import * as z from 'zod/mini';
import type { SchedulerLike } from 'rxjs';
import { en as english } from 'zod/v4/locales';

/**
 * Validation failures of caller input (a request, a pool config). The message names every failing
 * field path (`Invalid request: provider.sortt: unrecognized key`); `issues` keeps zod's issues for
 * callers that want to branch on them.
 */
export class ValidationError extends Error {
  /** The class name, shown in logs and stack traces. */
  override name = 'ValidationError';
  /** zod's issues, one per failing field. */
  readonly issues: readonly z.core.$ZodIssue[];

  constructor(message: string, issues: readonly z.core.$ZodIssue[]) {
    super(message);
    this.issues = issues;
  }
}

/**
 * zod's English messages, passed with each parse: the core uses `zod/mini` (a small browser
 * bundle), which loads no locale, and setting zod's global one would change the host app's zod.
 */
const englishMessages = english().localeError;

/** Parses with the schema, failures described in English whatever zod's global locale. */
export function safeParseEnglish<T extends z.ZodMiniType>(schema: T, value: unknown): z.core.util.SafeParseResult<z.output<T>> {
  return z.safeParse(schema, value, { error: englishMessages });
}

/** `Invalid <what>: <path>: <issue>; <path>: <issue>`. */
export function formatZodError(error: z.core.$ZodError, what: string): string {
  return `Invalid ${what}: ${error.issues.flatMap(describeIssue).join('; ')}`;
}

function describeIssue(issue: z.core.$ZodIssue): string[] {
  // zod reports unknown keys on the parent object; name each key as a field of its own.
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => `${formatPath([...issue.path, key])}: unrecognized key`);
  }
  // zod says only "Invalid key in record"; what is wrong with the key is in its own issues.
  if (issue.code === 'invalid_key') {
    return issue.issues.map((inner) => `${formatPath(issue.path)}: ${inner.message}`);
  }
  if (issue.code === 'invalid_union' && issue.errors.length > 0) {
    // A branch the value got into (an object, wrong in a field of its own): name those fields.
    const reached = issue.errors.find((branch) => branch.length > 0 && branch.every((inner) => inner.path.length > 0));
    if (reached !== undefined)
      return reached.flatMap((inner) => describeIssue(Object.assign({}, inner, { path: [...issue.path, ...inner.path] })));
    // zod says only "Invalid input" for a value no branch of a union took; say what each branch expects.
    const expected = [...new Set(issue.errors.flatMap((branch) => branch.map(expectation)))];
    return [`${formatPath(issue.path)}: ${expected.join(', or ')}`];
  }
  return [`${formatPath(issue.path)}: ${issue.message}`];
}

/** What one branch of a union asked for, in words: the valid values of an enum, else zod's message. */
function expectation(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_value') return `expected one of ${issue.values.map(literalText).join(', ')}`;
  return issue.message;
}

/** A literal as the config would spell it: JSON, except the numbers JSON has no spelling for (`Infinity`). */
function literalText(value: unknown): string {
  return typeof value === 'number' && !Number.isFinite(value) ? String(value) : JSON.stringify(value);
}

function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(root)';
  return path
    .map((segment, index) => {
      if (typeof segment === 'number') return `[${segment}]`;
      const name = String(segment);
      return index === 0 ? name : `.${name}`;
    })
    .join('');
}

/** Checks `value` with `schema` and throws a `ValidationError` naming every failing field of `what` (e.g. `retryTransient options`). */
export function checkOptions(schema: z.ZodMiniType, value: unknown, what: string): void {
  const checked = safeParseEnglish(schema, value);
  if (!checked.success) throw new ValidationError(formatZodError(checked.error, what), checked.error.issues);
}

/** Option fragments the operators' configs share. */
export const positiveInt = z.int().check(z.positive());
export const nonnegativeInt = z.int().check(z.nonnegative());
export const nonnegativeNumber = z.number().check(z.nonnegative());

export function functionOption<T>(message = 'expected a function') {
  return z.custom<T>((value) => typeof value === 'function', { message });
}

/** An RxJS scheduler: what reads the clock (`now`) and runs delays (`schedule`). */
export const schedulerOption = z.custom<SchedulerLike>(
  (value) =>
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Partial<SchedulerLike>).now === 'function' &&
    typeof (value as Partial<SchedulerLike>).schedule === 'function',
  { message: 'expected an RxJS scheduler' },
);
