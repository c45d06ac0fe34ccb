/** Where the command writes and what it reads; the real process by default, injectable for tests. */
export interface CommandIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  env: NodeJS.ProcessEnv;
  /** Signals that stop `serve` or abort a transfer. */
  signals: NodeJS.EventEmitter;
}

/** Calls `handler` once on the first SIGINT or SIGTERM; the returned function stops listening. */
export function onStopSignal(signals: NodeJS.EventEmitter, handler: (signal: 'SIGINT' | 'SIGTERM') => void): () => void {
  const onInt = (): void => { off(); handler('SIGINT'); };
  const onTerm = (): void => { off(); handler('SIGTERM'); };
  const off = (): void => {
    signals.off('SIGINT', onInt);
    signals.off('SIGTERM', onTerm);
  };
  signals.on('SIGINT', onInt);
  signals.on('SIGTERM', onTerm);
  return off;
}

/**
 * A command that failed in a way its user can act on, said in their words ("no such file: x.txt",
 * "interrupted"): printed as `wharf: <message>`, no error code, exit `exitCode` (1 unless said).
 */
export class CommandFailure extends Error {
  readonly exitCode: number;

  constructor(message: string, exitCode = 1) {
    super(message);
    this.name = 'CommandFailure';
    this.exitCode = exitCode;
  }
}
