import { isRecord, numberField, parseJsonBody, recordField, stringField, type JsonRecord } from './values.js';

/** OpenRouter's `error.availability` block (openrouter-wire.md §3). */
export interface ErrorAvailability {
  code?: string;
  retryable?: boolean;
  retryAfterSeconds?: number;
}

/** The fields of an OpenRouter error body that classification needs, read leniently. */
export interface ParsedErrorBody {
  /** `code ?? http_status`: usually the HTTP status, sometimes a string like `"server_error"`. */
  code?: number | string;
  /** A readable message; for `Provider returned error` it includes the unwrapped `metadata.raw`. */
  message: string;
  /** `metadata.error_type ?? error_type` (falling back to the OpenAI-style `type`). */
  errorType?: string;
  providerName?: string;
  metadata?: JsonRecord;
  availability?: ErrorAvailability;
}

const PROVIDER_RETURNED_ERROR = 'Provider returned error';
const RAW_MESSAGE_LIMIT = 500;

/**
 * Reads the error of a body: `{error: {...}}` (OpenRouter), `{error: "text"}`, an OpenAI-style
 * `{message, type, code}` without wrapper, or a bare `{...}` error object as the SDK hands it
 * over (`APIError.error`). A JSON string is parsed first. Returns `undefined` when nothing in the
 * body looks like an error.
 */
export function parseErrorBody(body: unknown): ParsedErrorBody | undefined {
  const parsed = parseJsonBody(body);
  if (typeof parsed === 'string') {
    const text = parsed.trim();
    return text === '' ? undefined : { message: truncate(text) };
  }
  if (!isRecord(parsed)) return undefined;

  const wrapped = parsed['error'];
  if (typeof wrapped === 'string') return { message: truncate(wrapped) };
  const error = isRecord(wrapped) ? wrapped : looksLikeError(parsed) ? parsed : undefined;
  if (error === undefined) return undefined;

  const metadata = recordField(error['metadata']);
  const availabilityRecord = recordField(error['availability']);
  const code = codeField(error['code']) ?? codeField(error['http_status']);
  const errorType = stringField(metadata?.['error_type']) ?? stringField(error['error_type']) ?? stringField(error['type']);
  const providerName = stringField(metadata?.['provider_name']);
  const baseMessage = stringField(error['message']) ?? stringField(error['detail']) ?? 'unknown error';
  const raw = baseMessage.startsWith(PROVIDER_RETURNED_ERROR) ? rawMessage(metadata?.['raw']) : undefined;
  const message = raw === undefined ? baseMessage : `${baseMessage}${providerName === undefined ? '' : ` (${providerName})`}: ${raw}`;

  return {
    code,
    message: truncate(message),
    errorType,
    providerName,
    metadata,
    availability:
      availabilityRecord === undefined
        ? undefined
        : {
            code: stringField(availabilityRecord['code']),
            retryable: typeof availabilityRecord['retryable'] === 'boolean' ? availabilityRecord['retryable'] : undefined,
            retryAfterSeconds: numberField(availabilityRecord['retry_after']),
          },
  };
}

/** The numeric form of an error code (`429`, `"429"`), if it has one. */
export function numericCode(code: number | string | undefined): number | undefined {
  const value = numberField(code);
  return value !== undefined && Number.isInteger(value) ? value : undefined;
}

function looksLikeError(record: JsonRecord): boolean {
  return typeof record['message'] === 'string' && ('code' in record || 'type' in record || 'metadata' in record);
}

function codeField(value: unknown): number | string | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  return stringField(value);
}

/** `metadata.raw` is a string, a JSON string, or an object with `message`, `detail` or `error`. */
function rawMessage(raw: unknown, depth = 0): string | undefined {
  if (depth > 3) return undefined;
  const parsed = parseJsonBody(raw);
  if (typeof parsed === 'string') return stringField(parsed.trim());
  if (!isRecord(parsed)) return undefined;
  for (const field of ['message', 'detail', 'error']) {
    const found = rawMessage(parsed[field], depth + 1);
    if (found !== undefined) return found;
  }
  return undefined;
}

function truncate(text: string): string {
  return text.length > RAW_MESSAGE_LIMIT ? `${text.slice(0, RAW_MESSAGE_LIMIT)}…` : text;
}
