/**
 * What the CLI touches of its process, passed in so that `runCli` runs in-process under test with
 * captured streams, a made-up environment and signals the test fires itself.
 */
export interface CliOutput {
  write(text: string): unknown;
  /** A terminal gets the live progress bar; anything else gets plain lines. */
  readonly isTTY?: boolean;
  /** Terminal width; lines are cut to it so the in-place redraw never wraps. */
  readonly columns?: number;
}

export interface CliIo {
  stdout: CliOutput;
  stderr: CliOutput;
  env: Readonly<Record<string, string | undefined>>;
  /** Relative paths resolve against this; default `process.cwd()`. */
  cwd?: string;
  /** First Ctrl-C: stop admitting prompts and let the ones in flight finish. */
  signal?: AbortSignal;
  /** Second Ctrl-C: abort the prompts in flight too. */
  abortSignal?: AbortSignal;
}

/** Exit codes, as shells and CI read them. */
export const EXIT = {
  ok: 0,
  /** The run finished, and some prompts failed (their failures are in the output file). */
  failures: 1,
  /** Bad flags, keys or files: nothing was sent. */
  usage: 2,
  /** Stopped by Ctrl-C; the output file holds whole lines only, and a rerun resumes. */
  interrupted: 130,
} as const;
