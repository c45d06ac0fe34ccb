// STUB — a minimal entry until the server lands; the full CLI comes with the client/CLI issue.
export async function main(_argv: string[]): Promise<number> {
  process.stderr.write('wharf: the server is not built yet\n');
  return 1;
}
