import { providerPreferencesSchema } from '../core/request.js';
import type { ProviderPreferences } from '../core/types.js';
import { formatZodError, safeParseEnglish, ValidationError } from '../core/validation.js';

/**
 * Small typed helpers for OpenRouter's routing knobs: the `provider` preferences object and the
 * model variant suffixes (guides/routing/model-variants).
 */

/** The variant suffixes OpenRouter documents; `online` is deprecated but still served. */
export const MODEL_VARIANTS = ['free', 'nitro', 'floor', 'exacto', 'extended', 'thinking', 'online'] as const;

/** One of `MODEL_VARIANTS`: a suffix such as `nitro` in `openai/gpt-4o:nitro`. */
export type ModelVariant = (typeof MODEL_VARIANTS)[number];

const KNOWN_VARIANTS: ReadonlySet<string> = new Set(MODEL_VARIANTS);

/** Splits `openai/gpt-4o:nitro` into `{ base: 'openai/gpt-4o', variant: 'nitro' }`. */
export function splitVariant(model: string): { base: string; variant?: ModelVariant } {
  const colon = model.lastIndexOf(':');
  const suffix = colon === -1 ? '' : model.slice(colon + 1);
  if (!KNOWN_VARIANTS.has(suffix)) return { base: model };
  return { base: model.slice(0, colon), variant: suffix as ModelVariant };
}

/**
 * The model with `variant` as its suffix, replacing a variant it already has (a slug carries one):
 * `withVariant('openai/gpt-4o:free', 'nitro')` is `openai/gpt-4o:nitro`. Other suffixes, such as a
 * provider's `:beta`, are part of the slug and are kept.
 */
export function withVariant(model: string, variant: ModelVariant): string {
  return `${splitVariant(model).base}:${variant}`;
}

/** The model without a variant suffix. */
export function withoutVariant(model: string): string {
  return splitVariant(model).base;
}

/**
 * Checks `provider` preferences the way OpenRouter does (unknown keys rejected) and returns them
 * typed. Throws a `ValidationError` naming the field, e.g. `Invalid provider preferences: sortt:
 * unrecognized key`.
 */
export function providerRouting(preferences: ProviderPreferences): ProviderPreferences {
  const result = safeParseEnglish(providerPreferencesSchema, preferences);
  if (!result.success) throw new ValidationError(formatZodError(result.error, 'provider preferences'), result.error.issues);
  return preferences;
}
