/** Where the command writes and what it reads; the real process by default, injectable for tests. */
export interface CommandIo {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  env: NodeJS.ProcessEnv;
  /** Signals that stop `serve` or abort a transfer. */
  signals: NodeJS.EventEmitter;
}
