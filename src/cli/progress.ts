/** A one-line progress display on stderr (redrawn in place on a terminal). */
export class ProgressLine {
  private last = 0;
  private readonly tty = process.stderr.isTTY === true;
  constructor(private readonly enabled = true) {}

  /** Redraw at most every 200 ms (always when `force`). */
  update(text: string, force = false): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (!force && now - this.last < 200) return;
    this.last = now;
    if (this.tty) process.stderr.write(`\r\x1b[K${text}`);
    else if (force && text !== '') process.stderr.write(`${text}\n`);
  }

  done(text: string): void {
    if (!this.enabled) return;
    if (this.tty) process.stderr.write(`\r\x1b[K${text}\n`);
    else process.stderr.write(`${text}\n`);
  }
}

export function bar(fraction: number, width = 24): string {
  const f = Math.max(0, Math.min(1, fraction));
  const n = Math.round(f * width);
  return `[${'#'.repeat(n)}${'.'.repeat(width - n)}]`;
}

export function clock(ms: number): string {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  return `${h > 0 ? `${h}:` : ''}${String(m).padStart(h > 0 ? 2 : 1, '0')}:${String(ss).padStart(2, '0')}`;
}
