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
