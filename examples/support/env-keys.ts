/**
 * The keys in `OPENROUTER_API_KEYS` as the CLI reads them: comma-separated (or one per line), each
 * the key alone or `label=key`, so that one value of the variable serves the CLI and the examples.
 */
export function keysFromEnvironment(variable = process.env.OPENROUTER_API_KEYS ?? ''): Array<{ key: string; label: string }> {
  return variable
    .split(/[,\r\n]+/)
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0)
    .map((entry, index) => {
      const equals = entry.indexOf('=');
      if (equals < 0) return { key: entry, label: `key-${index + 1}` };
      return { key: entry.slice(equals + 1).trim(), label: entry.slice(0, equals).trim() };
    });
}
