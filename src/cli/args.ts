/**
 * Minimal argument parser for the gmemlab CLI: `--flag`, `--opt value`, `--opt=value`, positionals.
 * Short options (`-q`, `-v`, `-j`, `-h`, bundled as `-qv`) stand for their long form where the
 * command defines it. Unknown options, long or short, are usage errors (exit code 2); a lone `-`
 * is a positional (standard input).
 */

export class UsageError extends Error {}

export type OptSpec = { readonly [name: string]: 'bool' | 'string' };

export type ParsedArgs = {
  readonly opts: Map<string, string | true>;
  readonly positionals: string[];
};

/** Short options and the long option each stands for (only where a command defines it). */
export const SHORT_OPTIONS: Readonly<Record<string, string>> = {
  q: 'quiet',
  v: 'verbose',
  j: 'json',
  h: 'help',
};

export function parseArgs(argv: readonly string[], spec: OptSpec): ParsedArgs {
  const opts = new Map<string, string | true>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      const kind = spec[name];
      if (kind === undefined) throw new UsageError(`unknown option --${name}`);
      if (kind === 'bool') {
        if (eq >= 0) throw new UsageError(`--${name} takes no value`);
        opts.set(name, true);
      } else {
        let v: string | undefined;
        if (eq >= 0) v = a.slice(eq + 1);
        else v = argv[++i];
        if (v === undefined) throw new UsageError(`--${name} needs a value`);
        opts.set(name, v);
      }
    } else if (a === '-h') {
      opts.set('help', true);
    } else if (a.length > 1 && a.startsWith('-')) {
      // One or more bundled short flags: -q, -v, -qv.
      for (const c of a.slice(1)) {
        const name = SHORT_OPTIONS[c];
        if (name === undefined || spec[name] !== 'bool')
          throw new UsageError(`unknown option -${c}${a.length > 2 ? ` (in ${a})` : ''}`);
        opts.set(name, true);
      }
    } else positionals.push(a);
  }
  return { opts, positionals };
}

export function optString(p: ParsedArgs, name: string): string | undefined {
  const v = p.opts.get(name);
  return typeof v === 'string' ? v : undefined;
}

/**
 * A non-negative integer option, exactly as written: values outside `min..max` (by default
 * 0..Number.MAX_SAFE_INTEGER, the integers a number holds exactly) are usage errors, never
 * rounded.
 */
export function optInt(
  p: ParsedArgs,
  name: string,
  range: { readonly min?: number; readonly max?: number } = {},
): number | undefined {
  const v = optString(p, name);
  if (v === undefined) return undefined;
  const min = range.min ?? 0;
  const max = range.max ?? Number.MAX_SAFE_INTEGER;
  const span = max === Number.MAX_SAFE_INTEGER ? `${min}..2^53-1` : `${min}..${max}`;
  if (!/^\d+$/.test(v)) {
    const what = min === 0 ? 'a non-negative integer' : `an integer ${span}`;
    throw new UsageError(`--${name} expects ${what}, got "${v}"`);
  }
  const n = BigInt(v);
  if (n < BigInt(min) || n > BigInt(max))
    throw new UsageError(`--${name} expects an integer ${span}, got ${v}`);
  return Number(n);
}

/**
 * Durations like 30, 30s, 5m, 1h (seconds by default), in milliseconds; at most 2^53-1 ms
 * (about 285,000 years), so the value is exact.
 */
export function optDuration(p: ParsedArgs, name: string): number | undefined {
  const v = optString(p, name);
  if (v === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(v);
  if (!m) throw new UsageError(`--${name} expects a duration such as 30s, 5m or 1h, got "${v}"`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const ms =
    unit === 'ms' ? n : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n * 3_600_000;
  if (!(ms <= Number.MAX_SAFE_INTEGER))
    throw new UsageError(`--${name}: ${v} is too long (at most 2^53-1 ms)`);
  return ms;
}
