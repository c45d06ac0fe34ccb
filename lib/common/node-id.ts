// A node's name among the processes that share one data dir: it names the node's staging area
// (lib/uploads/lease.ts) and appears in the command's banner and request log.
import { hostname } from 'node:os';

/** Letters, digits, `.`, `_` and `-`, starting with a letter or digit: safe as a file name and in a log line. */
const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export const isNodeId = (id: unknown): id is string => typeof id === 'string' && NODE_ID.test(id);

/** `<hostname>-<pid>`, held to the node id's characters and length. */
export function defaultNodeId(): string {
  const pid = String(process.pid);
  const host = hostname().replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[._-]+/, '').slice(0, 63 - pid.length);
  return `${host || 'node'}-${pid}`;
}
