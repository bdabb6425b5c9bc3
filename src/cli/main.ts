import { runCli } from './run-cli.js';

/**
 * The `openrouter-rx` executable (tsup adds the `#!/usr/bin/env node` line). Ctrl-C once stops
 * admitting prompts and lets those in flight finish; twice aborts them; a third time exits at once.
 * SIGTERM (a CI runner or `kill`) aborts at once, as the second Ctrl-C does. Either way the
 * results file holds whole lines only.
 */
function main(): void {
  const stop = new AbortController();
  const abort = new AbortController();
  let interrupts = 0;
  process.on('SIGINT', () => {
    interrupts++;
    if (interrupts === 1) stop.abort();
    else if (interrupts === 2) abort.abort();
    else process.exit(130);
  });
  process.on('SIGTERM', () => {
    stop.abort();
    abort.abort();
  });
  runCli(process.argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    signal: stop.signal,
    abortSignal: abort.signal,
  }).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`openrouter-rx: unexpected error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}

main();
