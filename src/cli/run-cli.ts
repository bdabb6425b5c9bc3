import packageJson from '../../package.json' with { type: 'json' };
import { ValidationError } from '../core/validation.js';
import { UsageError } from './args.js';
import { dashboardCommand } from './dashboard-command.js';
import { EXIT, type CliIo } from './io.js';
import { runCommand } from './run-command.js';
import { RUN_HELP, parseRunArgs } from './run-options.js';

/**
 * The CLI without its process: parses `argv`, runs a command, returns the exit code. Everything it
 * prints goes to `io`, so tests run it in-process; `main.ts` wires it to the real process.
 */

export const HELP = `openrouter-rx ${packageJson.version}: spread OpenRouter traffic over many keys, with live key health.

Usage:
  openrouter-rx run <prompts.jsonl> --out <results.jsonl> [flags]   batch prompts, resumable
  openrouter-rx dashboard [flags]                                   live key health in the browser

Try it with no key (the sample prompts ship with the package; from a clone: examples/prompts.jsonl):
  openrouter-rx run node_modules/openrouter-rx/examples/prompts.jsonl --out results.jsonl --fake
  openrouter-rx dashboard --fake

Keys come from OPENROUTER_API_KEYS (comma-separated) or --keys-file, never from a flag.
Run 'openrouter-rx <command> --help' for a command's flags.
`;

export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        io.stdout.write(HELP);
        return command === undefined ? EXIT.usage : EXIT.ok;
      case '--version':
      case '-v':
        io.stdout.write(`${packageJson.version}\n`);
        return EXIT.ok;
      case 'run': {
        const parsed = parseRunArgs(rest);
        if (parsed.help) {
          io.stdout.write(RUN_HELP);
          return EXIT.ok;
        }
        return await runCommand(parsed.options, io);
      }
      case 'dashboard':
        return await dashboardCommand(rest, io);
      default:
        throw new UsageError(`unknown command "${command}"; the commands are run and dashboard (openrouter-rx --help)`);
    }
  } catch (error) {
    if (error instanceof UsageError || error instanceof ValidationError) {
      const topic = command === 'run' || command === 'dashboard' ? ` ${command}` : '';
      io.stderr.write(`openrouter-rx${topic}: ${error.message.split('\n').join(`\nopenrouter-rx${topic}: `)}\n`);
      if (error instanceof UsageError && topic !== '') io.stderr.write(`(openrouter-rx${topic} --help lists the flags)\n`);
      return EXIT.usage;
    }
    throw error;
  }
}
