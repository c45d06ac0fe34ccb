/**
 * The flags of each command. The limit flags are generated from `DEFAULT_LIMITS`, so a new limit
 * gets its flag and variable by itself.
 */
import { DEFAULT_LIMITS, LIMIT_UNITS, type Limits } from '../common/limits.js';
import { UsageError, type FlagSpec, type Flags } from './flags.js';
import { S3_FLAGS } from './s3-flags.js';

export const DEFAULT_LISTEN = '127.0.0.1:10101';
export const DEFAULT_SERVER = 'http://127.0.0.1:10101';

const kebab = (key: string): string => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const envName = (flag: string): string => `WHARF_${flag.replace(/-/g, '_').toUpperCase()}`;

const keyFlags = (serving: boolean): FlagSpec[] => [
  { name: 'access-key-id', kind: 'string', env: 'WHARF_ACCESS_KEY_ID', value: 'ID', help: serving ? 'the access key apps authenticate with' : 'the access key to authenticate with', defaultText: serving ? "Wave's access_key_id, loopback only" : "Wave's access_key_id" },
  { name: 'access-key-secret', kind: 'string', env: 'WHARF_ACCESS_KEY_SECRET', value: 'SECRET', help: 'its secret (prefer the variable: flags show in ps)', defaultText: "Wave's access_key_secret" },
  { name: 'base-url', kind: 'string', env: 'WHARF_BASE_URL', value: 'PATH', help: serving ? 'URL prefix of _f/ and _m/' : "the server's base URL path", defaultText: '/' },
];
const HELP_FLAG: FlagSpec = { name: 'help', kind: 'boolean', help: 'show this help' };

export const LIMIT_KEYS = Object.keys(DEFAULT_LIMITS) as Array<keyof Limits>;

/** A size in the largest unit that divides it, in a form the flag accepts back (`8GiB`). */
function exactSize(n: number): string {
  for (const [unit, f] of [['TiB', 1024 ** 4], ['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (n >= f && n % f === 0) return `${n / f}${unit}`;
  }
  return String(n);
}

function exactDuration(ms: number): string {
  for (const [unit, f] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= f && ms % f === 0) return `${ms / f}${unit}`;
  }
  return `${ms}ms`;
}

/** One line per limit for `--help`; a limit missing here is still a flag, described by its key. */
const LIMIT_HELP: Partial<Record<keyof Limits, string>> = {
  fileSize: 'bytes in one uploaded file',
  files: 'files in one upload request',
  requestSize: 'bytes in one upload request',
  parts: 'parts in one multipart body',
  fields: 'non-file fields in one multipart body',
  fieldSize: "bytes in one field's value",
  headerSize: "bytes in one part's header block",
  frameSize: 'bytes in one image-stream frame',
  streams: 'image streams alive at once',
  viewersPerStream: 'viewers of one image stream',
  viewerStallTimeout: 'a viewer that reads nothing this long is dropped',
  streamIdleTimeout: 'a stream without a frame this long is ended',
  uploadIdleTimeout: 'an upload body that sends nothing this long fails',
  headersTimeout: 'time a client has to send its request headers',
  cacheFileSize: 'files up to this size are cached in memory, those over 64 KiB once asked for twice; of bigger files, 64 KiB blocks a Range asked for twice, up to this size per file (0: no cache)',
  cacheSize: 'bytes in the memory cache',
  closeGrace: 'time downloads get to finish on shutdown',
  downloadStallTimeout: 'a download whose client takes nothing this long is cut',
  uploadTtl: 'uploads older than this are removed (0: kept until unloaded)',
  storeSize: 'bytes all uploads may take together; past it 507 (0: no quota)',
};

/** `--limit-file-size` … one per key of `Limits`, so a new limit gets its flag and variable by itself. */
export const LIMIT_FLAGS: FlagSpec[] = LIMIT_KEYS.map((key) => {
  const unit = LIMIT_UNITS[key];
  const name = `limit-${kebab(key)}`;
  const d = DEFAULT_LIMITS[key];
  const time = unit === 'ms' || unit === 'age';
  // A limit whose 0 turns it off (uploadTtl, storeSize) says so rather than `0ms`.
  const off = d === 0 && (key === 'uploadTtl' || key === 'storeSize');
  return {
    name,
    kind: unit === 'bytes' ? 'size' : time ? 'duration' : 'count',
    env: envName(name),
    value: unit === 'bytes' ? 'SIZE' : time ? 'DURATION' : 'N',
    help: LIMIT_HELP[key] ?? `limits.${key}`,
    defaultText: off ? 'off' : unit === 'bytes' ? exactSize(d) : time ? exactDuration(d) : String(d),
  } satisfies FlagSpec;
});

export const SERVE_FLAGS: FlagSpec[] = [
  { name: 'listen', kind: 'string', env: 'WHARF_LISTEN', value: 'HOST:PORT', help: 'address to listen on (:PORT = all interfaces)', defaultText: DEFAULT_LISTEN },
  { name: 'data-dir', kind: 'string', env: 'WHARF_DATA_DIR', value: 'DIR', help: 'where uploads are stored', defaultText: './data' },
  ...S3_FLAGS,
  { name: 'public-dir', kind: 'list', env: 'WHARF_PUBLIC_DIR', value: 'URL@DIR', help: 'serve DIR at URL to anyone; repeatable' },
  { name: 'private-dir', kind: 'list', env: 'WHARF_PRIVATE_DIR', value: 'URL@DIR', help: 'serve DIR at URL to access keys only; repeatable' },
  ...keyFlags(true),
  { name: 'cors-origin', kind: 'list', env: 'WHARF_CORS_ORIGIN', separator: ',', value: 'ORIGIN', help: 'let pages on ORIGIN (http://localhost:5173) call this server; repeatable, comma-separated in the variable', defaultText: 'none' },
  { name: 'cors-credentials', kind: 'boolean', env: 'WHARF_CORS_CREDENTIALS', help: 'let those pages send cookies (the host app\'s session)', defaultText: 'off' },
  { name: 'anonymous-uploads', kind: 'boolean', env: 'WHARF_ANONYMOUS_UPLOADS', help: 'let anyone POST uploads', defaultText: 'off' },
  { name: 'accept', kind: 'list', env: 'WHARF_ACCEPT', value: 'TYPE|.EXT', help: 'accept only uploads of these types (image/*) or extensions (.pdf), name, declared type and bytes agreeing; repeatable', defaultText: 'any file' },
  { name: 'no-index-pages', kind: 'boolean', env: 'WHARF_NO_INDEX_PAGES', help: "directory URLs are 404s instead of serving their index.html", defaultText: 'off: index pages served' },
  { name: 'dotfiles', kind: 'boolean', env: 'WHARF_DOTFILES', help: 'serve dotfiles from mapped directories', defaultText: 'off' },
  { name: 'group-readable', kind: 'boolean', env: 'WHARF_GROUP_READABLE', help: "let the data dir's group read uploads (0750/0640)", defaultText: 'off: owner-only, 0700/0600' },
  { name: 'cache-control', kind: 'string', env: 'WHARF_CACHE_CONTROL', value: 'VALUE', help: 'Cache-Control of files anyone may read', defaultText: 'public, max-age=0, must-revalidate' },
  { name: 'private-cache-control', kind: 'string', env: 'WHARF_PRIVATE_CACHE_CONTROL', value: 'VALUE', help: 'Cache-Control of files that need authorization (must say private or no-store)', defaultText: 'private, max-age=0, must-revalidate' },
  { name: 'trust-unrecorded-uploads', kind: 'boolean', env: 'WHARF_TRUST_UNRECORDED_UPLOADS', help: "serve uploads with no record of who made them (copied into the data dir) as the app's own", defaultText: "off: as an end user's" },
  { name: 'sync-io', kind: 'choice', env: 'WHARF_SYNC_IO', choices: ['auto', 'off'], help: 'small file-system calls on the event loop while cheap; off for NFS/EFS/FUSE', defaultText: 'auto' },
  { name: 'node-id', kind: 'string', env: 'WHARF_NODE_ID', value: 'ID', help: 'this node among those sharing the data dir: names its staging area, shown in the log', defaultText: 'HOSTNAME-PID' },
  { name: 'lease-interval', kind: 'duration', env: 'WHARF_LEASE_INTERVAL', value: 'DURATION', help: "how often this node renews its staging lease; a node's staging is swept 6 intervals after its last renewal", defaultText: '10s' },
  { name: 'workers', kind: 'string', env: 'WHARF_WORKERS', value: 'N|auto', help: 'processes sharing the port and the data dir (auto: one per core)', defaultText: '1' },
  { name: 'redis-url', kind: 'string', env: 'WHARF_REDIS_URL', value: 'URL', help: 'share image streams with every node on this Redis (needs: npm install redis)', defaultText: 'none: streams stay in this machine' },
  { name: 'log', kind: 'choice', env: 'WHARF_LOG', choices: ['text', 'json', 'off'], help: 'request log format', defaultText: 'text on a terminal, else json' },
  ...LIMIT_FLAGS,
  HELP_FLAG,
  { name: 'version', kind: 'boolean', help: 'print the version' },
];

const SERVER_FLAG: FlagSpec = { name: 'server', kind: 'string', env: 'WHARF_SERVER', value: 'URL', help: 'the wharf or Wave server', defaultText: DEFAULT_SERVER };
export const UPLOAD_FLAGS: FlagSpec[] = [
  SERVER_FLAG, ...keyFlags(false),
  { name: 'dir', kind: 'boolean', help: 'each FILE is a directory, uploaded whole under one id' },
  { name: 'expires', kind: 'duration', value: 'DURATION', help: 'the upload is removed after this long (like 1h, 7d; the server may cap it)', defaultText: "the server's TTL, if any" },
  { name: 'once', kind: 'boolean', help: 'the upload is removed after its first complete download' },
  HELP_FLAG,
];
export const TRANSFER_FLAGS: FlagSpec[] = [SERVER_FLAG, ...keyFlags(false), HELP_FLAG];

/** A key half given: said with the names the user used (a flag or its variable) and the one missing. */
export function unpairedKey(flags: Flags): UsageError | undefined {
  const id = flags.given('access-key-id');
  const secret = flags.given('access-key-secret');
  if ((id === undefined) === (secret === undefined)) return undefined;
  return id === undefined
    ? new UsageError(`${secret!} is set, but no access key id: give --access-key-id (or set WHARF_ACCESS_KEY_ID) too`)
    : new UsageError(`${id} is set, but no secret: give --access-key-secret (or, better, set WHARF_ACCESS_KEY_SECRET) too`);
}
