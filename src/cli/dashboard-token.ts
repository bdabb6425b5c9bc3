import { TOKEN_PATTERN, TOKEN_RULE } from '../dashboard/access.js';
import { UsageError } from './args.js';

/**
 * The dashboard's token, for `dashboard` and `run --dashboard-port`. It comes from the environment
 * only, as keys do: a flag would keep it in the shell history and show it in `ps`. Nothing prints
 * it; messages name the variable.
 */

export const DASHBOARD_TOKEN_ENV = 'OPENROUTER_RX_DASHBOARD_TOKEN';

/** The token, or undefined when the variable is not set (then the dashboard asks for none). */
export function dashboardToken(env: Readonly<Record<string, string | undefined>>): string | undefined {
  const token = env[DASHBOARD_TOKEN_ENV];
  if (token === undefined) return undefined;
  if (!TOKEN_PATTERN.test(token)) throw new UsageError(`${DASHBOARD_TOKEN_ENV}: ${TOKEN_RULE}`);
  return token;
}

/** How to open a dashboard that asks for the token, with the variable's name in place of its value. */
export function tokenHint(url: string): string {
  return `it asks for its token: open ${url}?token=<${DASHBOARD_TOKEN_ENV}> once in a browser`;
}
