/**
 * "Did you mean" for names read from input files: the closest known name by edit distance
 * (Damerau–Levenshtein with adjacent transpositions), case-insensitive, within a distance that
 * grows with the length of the word.
 */

function distance(a: string, b: string): number {
  const m = a.length;
  const n = b.length;
  // Three rows suffice for the optimal-string-alignment variant.
  let prev2 = new Array<number>(n + 1).fill(0);
  let prev = Array.from({ length: n + 1 }, (_, j) => j);
  for (let i = 1; i <= m; i++) {
    const cur = new Array<number>(n + 1);
    cur[0] = i;
    for (let j = 1; j <= n; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d = Math.min(d, prev2[j - 2]! + 1);
      cur[j] = d;
    }
    prev2 = prev;
    prev = cur;
  }
  return prev[n]!;
}

/** The known name closest to `word`, or undefined when none is close enough. */
export function closest(word: string, known: Iterable<string>): string | undefined {
  if (word.length > 64) return undefined;
  const w = word.toLowerCase();
  const limit = w.length <= 4 ? 1 : w.length <= 8 ? 2 : 3;
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = distance(w, k.toLowerCase());
    if (d < bestD) {
      best = k;
      bestD = d;
    }
  }
  return bestD <= limit ? best : undefined;
}

/** ` (did you mean "x"?)`, or an empty string. */
export function didYouMean(word: string, known: Iterable<string>): string {
  const c = closest(word, known);
  return c === undefined ? '' : ` (did you mean "${c}"?)`;
}

/** A value quoted for a message, cut to `max` characters (input can be arbitrarily long). */
export function quote(v: string, max = 60): string {
  if (v.length <= max) return JSON.stringify(v);
  return `${JSON.stringify(v.slice(0, max))}… (${v.length} characters)`;
}
