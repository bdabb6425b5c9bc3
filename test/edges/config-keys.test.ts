/**
 * Key text never comes back from the pool's own errors (a key passed where a label goes), and a
 * label is a key's only when it is one: a key read with its line ending is refused as a label, a
 * label of your own that starts with `sk-` is not. (Edge cases a review found; each failed before
 * its fix.)
 */
import { describe, expect, it } from 'vitest';
import { createKeyPool } from '../../src/index.js';
import { of } from 'rxjs';
import { TEST_KEYS } from '../helpers/test-keys.js';

const SECRET = TEST_KEYS.echoedPrefix;
const transport = () => of();

describe('pool config and key text', () => {
  it('a key passed where a label goes (pool.enable) is not quoted back in the error', () => {
    const pool = createKeyPool({ keys: [{ key: SECRET, label: 'team-a' }], transport, discoverAccounts: false });
    let message = '';
    try {
      pool.enable(SECRET);
    } catch (error) {
      message = String((error as Error).message);
    }
    pool.dispose();
    expect(message).not.toBe('');
    expect(message).not.toContain(SECRET.slice(0, 20));
  });

  it('a key read as the label with its line ending (CRLF file, label and key swapped) is refused as a label', () => {
    expect(() => createKeyPool({ keys: [{ key: 'team-a', label: `${SECRET}\r` }], transport, discoverAccounts: false })).toThrow(
      /is an API key/,
    );
  });

  it('a label of your own that starts with "sk-" is not taken for a key', () => {
    expect(() =>
      createKeyPool({ keys: [{ key: SECRET, label: 'sk-hynix-research-team-a' }], transport, discoverAccounts: false }).dispose(),
    ).not.toThrow();
  });
});
