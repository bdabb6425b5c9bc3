import { parseArgs, type ParseArgsConfig } from 'node:util';
import * as z from 'zod';
import { MODEL_SLUG } from '../core/request-fast-path.js';

/**
 * Flag parsing shared by the commands: `node:util`'s `parseArgs` (strict, so a typo is an error
 * rather than a silently ignored flag) and zod schemas whose messages name the flag.
 */

/** A mistake in how the CLI was called: reported as one message and exit code 2, no stack. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Flags that would put a key in the shell history; refused with the ways that do not. */
const KEY_FLAGS = new Set(['--key', '--keys', '--api-key', '--api-keys', '-k']);

export const KEYS_HINT = 'set OPENROUTER_API_KEYS (comma-separated) or pass --keys-file <file> (one key per line, optionally label=key)';

type Options = NonNullable<ParseArgsConfig['options']>;

export interface ParsedFlags {
  values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  positionals: string[];
}

/**
 * `parseArgs` with messages a user can act on; never echoes what followed `=` (it may be a key).
 * The messages carry no "--help" hint: `runCli` adds one to every usage error of a command.
 */
export function parseFlags(argv: readonly string[], options: Options): ParsedFlags {
  for (const argument of argv) {
    // A key pasted as an argument would otherwise be echoed back in "cannot read file sk-or-...".
    if (/^sk-[\w-]{8,}$/.test(argument)) {
      throw new UsageError(`an argument looks like an API key; keys are never taken from the command line (shell history): ${KEYS_HINT}`);
    }
    if (argument === '--') break;
    const flag = argument.split('=')[0]!;
    if (KEY_FLAGS.has(flag)) {
      throw new UsageError(`${flag} is not accepted: a key given as a flag stays in your shell history; ${KEYS_HINT}`);
    }
  }
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: true });
    return { values: values as ParsedFlags['values'], positionals };
  } catch (error) {
    throw new UsageError(describeParseError(error));
  }
}

function describeParseError(error: unknown): string {
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message : String(error);
  // Node names options as '-o, --out <value>' or '--modle': prefer the long form.
  const flag = /--[A-Za-z][\w-]*/.exec(message)?.[0] ?? /'(-[A-Za-z])/.exec(message)?.[1];
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && flag !== undefined) {
    return `unknown flag ${flag}`;
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && flag !== undefined) {
    if (/argument missing/.test(message)) return `${flag} needs a value`;
    if (/ambiguous/.test(message)) return `${flag} needs a value; one that starts with "-" goes as ${flag}=<value>`;
    if (/does not take an argument/.test(message)) return `${flag} takes no value`;
  }
  return message;
}

/** Formats zod issues of a flags object as `--flag: problem` lines. */
export function describeFlagIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      const name = issue.path[0];
      const where = name === undefined ? '' : name === 'input' ? 'prompts file' : `--${String(name)}`;
      if (issue.code === 'unrecognized_keys') return issue.keys.map((key) => `--${key}: not a flag of this command`).join('\n');
      return where === '' ? issue.message : `${where}: ${issue.message}`;
    })
    .join('\n');
}

/** A whole-number flag within [min, max]. */
export function intFlag(min: number, max: number) {
  return z.string().transform((text, context) => {
    const value = /^\d+$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      context.addIssue({ code: 'custom', message: `must be a whole number from ${min} to ${max}, got "${text}"` });
      return z.NEVER;
    }
    return value;
  });
}

/** A flag whose value is one of `names`. */
export function oneOfFlag<const Name extends string>(names: readonly Name[]) {
  return z.string().transform((text, context) => {
    if (!(names as readonly string[]).includes(text)) {
      context.addIssue({ code: 'custom', message: `must be one of ${names.join(', ')}; got "${text}"` });
      return z.NEVER;
    }
    return text as Name;
  });
}

/** A URL flag (`http:` or `https:`). */
export const urlFlag = z.string().transform((text, context) => {
  let url: URL | undefined;
  try {
    url = new URL(text);
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    context.addIssue({ code: 'custom', message: `must be an http(s) URL such as https://openrouter.ai/api/v1, got "${text}"` });
    return z.NEVER;
  }
  return text;
});

/** A model slug: no spaces, as OpenRouter names models (`author/model[:variant]`). */
export const modelFlag = z.string().regex(MODEL_SLUG, 'must be a model slug without spaces, such as openai/gpt-4o-mini');

/** A list flag, repeatable and comma-separated: `--fallback-models a,b --fallback-models c`. */
export const commaSeparatedFlag = z.array(z.string()).transform((values) =>
  values
    .flatMap((value) => value.split(','))
    .map((value) => value.trim())
    .filter((value) => value.length > 0),
);

export const modelListFlag = commaSeparatedFlag.pipe(z.array(modelFlag).max(10, 'at most 10 fallback models'));
