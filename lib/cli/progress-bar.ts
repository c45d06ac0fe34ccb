/**
 * A one-line progress bar for a terminal: bytes, percentage, rate and ETA, redrawn in place with
 * `\r` at most every `interval` ms. The rate is taken over the last few seconds, so a stall shows.
 */
import type { Progress } from '../common/site-api.js';

export interface BarOutput {
  write(text: string): unknown;
  /** Terminal width; 80 when unknown. */
  columns?: number;
}

export interface BarOptions {
  label: string;
  out: BarOutput;
  /** Clock in ms; injectable for tests. Default `performance.now`. */
  now?: () => number;
  /** Least ms between redraws. Default 100. */
  interval?: number;
}

export interface Bar {
  update(progress: Progress): void;
  /** Draws the final state and ends the line. */
  done(): void;
  /** Ends the line if anything was drawn, leaving the last frame as it was (the transfer failed). */
  stop(): void;
}

const WINDOW_MS = 5000;

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[i]}`;
}

export function formatEta(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--:--';
  const s = Math.ceil(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** The text of one frame of the bar, fitted to `columns`. */
export function renderBar(label: string, p: Progress, bytesPerSecond: number, columns: number): string {
  const rate = `${formatBytes(Math.round(bytesPerSecond))}/s`;
  let stats: string;
  let fraction: number | undefined;
  if (p.total === undefined) {
    stats = `${formatBytes(p.loaded)}  ${rate}`;
  } else {
    fraction = p.total === 0 ? 1 : Math.min(1, p.loaded / p.total);
    const eta = bytesPerSecond > 0 ? (p.total - p.loaded) / bytesPerSecond : Number.POSITIVE_INFINITY;
    stats = `${String(Math.floor(fraction * 100)).padStart(3)}%  ${formatBytes(p.loaded)} / ${formatBytes(p.total)}  ${rate}  ETA ${formatEta(eta)}`;
  }
  const room = columns - 1 - stats.length - 2;
  const barWidth = fraction === undefined ? 0 : Math.min(30, Math.max(0, room - Math.min(label.length, 24) - 4));
  const labelWidth = Math.max(0, room - (barWidth ? barWidth + 4 : 0));
  const name = label.length <= labelWidth ? label : labelWidth > 1 ? `…${label.slice(label.length - labelWidth + 1)}` : '';
  const bar = barWidth ? `  [${'#'.repeat(Math.round(fraction! * barWidth)).padEnd(barWidth, '-')}]` : '';
  return `${name}${bar}  ${stats}`.slice(0, Math.max(0, columns - 1));
}

export function createBar(options: BarOptions): Bar {
  const now = options.now ?? (() => performance.now());
  const interval = options.interval ?? 100;
  const samples: Array<[number, number]> = [];
  let last: Progress = { loaded: 0, total: undefined };
  let drawnAt = Number.NEGATIVE_INFINITY;

  function rate(t: number): number {
    const first = samples[0];
    if (!first || t - first[0] <= 0) return 0;
    return ((last.loaded - first[1]) * 1000) / (t - first[0]);
  }

  function draw(t: number): void {
    drawnAt = t;
    // `\r` then clear-to-end-of-line: the new frame may be shorter than the old one.
    options.out.write(`\r${renderBar(options.label, last, rate(t), options.out.columns ?? 80)}\x1b[K`);
  }

  return {
    update(p) {
      const t = now();
      last = p;
      samples.push([t, p.loaded]);
      while (samples.length > 2 && t - samples[0]![0] > WINDOW_MS) samples.shift();
      if (t - drawnAt >= interval || (p.total !== undefined && p.loaded >= p.total)) draw(t);
    },
    done() {
      draw(now());
      options.out.write('\n');
    },
    stop() {
      if (drawnAt !== Number.NEGATIVE_INFINITY) options.out.write('\n');
    },
  };
}
