/**
 * Command-line flags with an environment-variable twin each. A flag given on the command line beats
 * its environment variable; an unknown flag or a value that does not parse is a `UsageError` (the
 * command exits 2 on it). Sizes accept IEC and SI units, durations accept `ms`, `s`, `m`, `h`, `d`.
 */
import { delimiter } from 'node:path';

export type FlagKind = 'string' | 'list' | 'boolean' | 'size' | 'duration' | 'count' | 'choice';

export interface FlagSpec {
  /** Long name without the dashes: `data-dir`. */
  name: string;
  kind: FlagKind;
  /** Environment variable read when the flag is absent: `WHARF_DATA_DIR`. */
  env?: string;
  /** Allowed values of a `choice`. */
  choices?: readonly string[];
  /** One line for `--help`. */
  help: string;
  /** Placeholder shown in `--help`: `DIR`. */
  value?: string;
  /** Shown in `--help` as the default. */
  defaultText?: string;
  /** What separates a `list`'s items in its variable, when the path delimiter can be in one (an origin's `:`). */
  separator?: string;
}

export type FlagValue = string | string[] | boolean | number;

/**
 * Typed reads of parsed flags, so no caller casts a `FlagValue`. Each checks the value's type: a
 * name read with the wrong accessor (a programming error, not a usage one) throws.
 */
export interface Flags {
  /** A `string` flag, or a `choice` flag read without its list. */
  str(name: string): string | undefined;
  /** A `choice` flag, typed as one of `choices`. */
  choice<T extends string>(name: string, choices: readonly T[]): T | undefined;
  /** A `boolean` flag: false when absent. */
  bool(name: string): boolean;
  /** A `size`, `duration` or `count` flag. */
  num(name: string): number | undefined;
  /** A `list` flag: empty when absent. */
  list(name: string): string[];
  /** How a flag was given, as its user wrote it (`--data-dir`, or `WHARF_DATA_DIR`); undefined when it was not. */
  given(name: string): string | undefined;
}

export interface ParsedArgs {
  /** Keyed by flag name; absent when neither the flag nor its variable was given. */
  values: Map<string, FlagValue>;
  /** The same values, read typed. */
  flags: Flags;
  positionals: string[];
}

/** A mistake in how the command was called: one line, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tib: 1024 ** 4,
  kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12,
};

const DURATION_UNITS: Record<string, number> = { '': 1, ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000 };

function parseQuantity(text: string, units: Record<string, number>, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const factor = m ? units[m[2]!.toLowerCase()] : undefined;
  if (!m || factor === undefined) throw new UsageError(`not a ${what}: ${JSON.stringify(text)}`);
  const n = Math.floor(Number(m[1]) * factor);
  if (!Number.isSafeInteger(n)) throw new UsageError(`${what} too large: ${JSON.stringify(text)}`);
  return n;
}

/** `512MiB`, `2GiB`, `1.5G` (IEC: K, M, G, T and KiB…TiB), `10MB` (SI: kB…TB), or plain bytes. */
export function parseSize(text: string): number {
  return parseQuantity(text, SIZE_UNITS, 'size (like 512MiB, 2GiB or a byte count)');
}

/** `30s`, `1.5s`, `10m`, `2h`, `7d`, `250ms`, or plain milliseconds. */
export function parseDuration(text: string): number {
  return parseQuantity(text, DURATION_UNITS, 'duration (like 30s, 10m or milliseconds)');
}

export function parseCount(text: string): number {
  if (!/^\s*\d+\s*$/.test(text)) throw new UsageError(`not a whole number: ${JSON.stringify(text)}`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new UsageError(`number too large: ${JSON.stringify(text)}`);
  return n;
}

export function parseBoolean(text: string): boolean {
  const t = text.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(t)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(t)) return false;
  throw new UsageError(`not a boolean (true/false): ${JSON.stringify(text)}`);
}

/**
 * A list in one environment variable is split on the platform's path delimiter (`:` on POSIX, `;`
 * on Windows), as in `PATH`: it never occurs inside a Windows path, and mappings are `URL@PATH`.
 */
export function splitList(text: string, separator: string = delimiter): string[] {
  return text.split(separator).map((s) => s.trim()).filter((s) => s !== '');
}

const isOneOf = <T extends string>(value: string, choices: readonly T[]): value is T => choices.some((c) => c === value);

/** Reads `values` typed; see `Flags`. */
export function flagsOf(values: ReadonlyMap<string, FlagValue>, sources: ReadonlyMap<string, string> = new Map()): Flags {
  const wrong = (name: string, kind: string): Error => new TypeError(`flag --${name} is not a ${kind} flag`);
  const str = (name: string): string | undefined => {
    const v = values.get(name);
    if (v === undefined || typeof v === 'string') return v;
    throw wrong(name, 'string');
  };
  return {
    str,
    choice(name, choices) {
      const v = str(name);
      if (v === undefined || isOneOf(v, choices)) return v;
      throw wrong(name, choices.join('|'));
    },
    bool(name) {
      const v = values.get(name);
      if (v === undefined || typeof v === 'boolean') return v === true;
      throw wrong(name, 'boolean');
    },
    num(name) {
      const v = values.get(name);
      if (v === undefined || typeof v === 'number') return v;
      throw wrong(name, 'number');
    },
    list(name) {
      const v = values.get(name);
      if (v === undefined) return [];
      if (Array.isArray(v)) return v;
      throw wrong(name, 'list');
    },
    given: (name) => (values.has(name) ? sources.get(name) ?? `--${name}` : undefined),
  };
}

/** A list flag's values so far; nothing when it has none. */
const listOf = (v: FlagValue | undefined): string[] => (Array.isArray(v) ? v : []);

function convert(spec: FlagSpec, raw: string, from: string): FlagValue {
  try {
    switch (spec.kind) {
      case 'size': return parseSize(raw);
      case 'duration': return parseDuration(raw);
      case 'count': return parseCount(raw);
      case 'boolean': return parseBoolean(raw);
      case 'choice':
        if (!spec.choices!.includes(raw)) throw new UsageError(`expected one of ${spec.choices!.join(', ')}, got ${JSON.stringify(raw)}`);
        return raw;
      case 'list': return [raw];
      case 'string':
        if (raw === '') throw new UsageError('empty value');
        return raw;
    }
  } catch (err) {
    if (err instanceof UsageError) throw new UsageError(`${from}: ${err.message}`);
    throw err;
  }
}

/**
 * Parses `argv` against `specs`: `--name value`, `--name=value`, a bare `--name` for booleans,
 * `--` ends flags. Then fills what is still missing from `env`.
 */
export function parseArgs(argv: readonly string[], specs: readonly FlagSpec[], env: NodeJS.ProcessEnv = {}): ParsedArgs {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const values = new Map<string, FlagValue>();
  // Flags read from their variable (the others came from the command line).
  const sources = new Map<string, string>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg);
      continue;
    }
    if (!arg.startsWith('--')) throw new UsageError(`unknown flag ${arg} (flags are long: --name)`);
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq === -1 ? undefined : eq);
    const spec = byName.get(name);
    if (!spec) throw new UsageError(`unknown flag --${name}`);
    let raw: string;
    if (eq !== -1) raw = arg.slice(eq + 1);
    else if (spec.kind === 'boolean') raw = 'true';
    else {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith('--') && next.length > 2)) throw new UsageError(`--${name} needs a value`);
      raw = next;
      i++;
    }
    const value = convert(spec, raw, `--${name}`);
    const prev = values.get(name);
    if (spec.kind === 'list') values.set(name, [...listOf(prev), ...listOf(value)]);
    else if (prev !== undefined) throw new UsageError(`--${name} given twice`);
    else values.set(name, value);
  }
  for (const spec of specs) {
    if (values.has(spec.name) || !spec.env) continue;
    const raw = env[spec.env];
    if (raw === undefined) continue;
    if (spec.kind === 'list') {
      const items = splitList(raw, spec.separator);
      if (items.length) values.set(spec.name, items);
    } else if (raw !== '' || spec.kind === 'boolean') {
      values.set(spec.name, convert(spec, raw, spec.env));
    }
    sources.set(spec.name, spec.env);
  }
  return { values, flags: flagsOf(values, sources), positionals };
}

/** `--help` text: one aligned line per flag, with its variable and default. */
export function formatFlags(specs: readonly FlagSpec[]): string {
  const rows = specs.map((s) => {
    const left = `--${s.name}${s.kind === 'boolean' ? '' : ` ${s.value ?? (s.kind === 'choice' ? s.choices!.join('|') : 'VALUE')}`}`;
    const extra = [s.env && `env ${s.env}`, s.defaultText && `default ${s.defaultText}`].filter(Boolean).join('; ');
    return [left, `${s.help}${extra ? ` (${extra})` : ''}`] as const;
  });
  const width = Math.min(38, Math.max(...rows.map(([l]) => l.length)));
  return rows.map(([l, r]) => `  ${l.padEnd(width)}  ${r}`).join('\n');
}
