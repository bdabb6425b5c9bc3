/**
 * Debian's Chromium for the browser tests, driven by playwright-core (which downloads nothing).
 * The flags keep it off the network: without them it reaches for Google's hosts at every start,
 * which this machine's closed network refuses.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { describe, it } from 'vitest';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export const haveChromium = existsSync(CHROMIUM);

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

/**
 * When Chromium is missing: under CI a failing test that says how to install it, elsewhere a
 * skipped one with a warning. Call it only then, so a normal run reports no skipped test.
 */
export function describeMissingChromium(title: string, file: string): void {
  describe(title, () => {
    if (process.env.CI !== undefined) {
      it(`needs ${CHROMIUM} (Debian's chromium package)`, () => {
        throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium), or set CHROMIUM_PATH`);
      });
    } else {
      console.warn(`${file}: skipping "${title}": ${CHROMIUM} is not installed (apt-get install -y chromium)`);
      it.skip(`needs ${CHROMIUM} (apt-get install -y chromium)`, () => undefined);
    }
  });
}
