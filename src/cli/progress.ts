/**
 * Progress reporting for long CLI work: a redrawn bar on a TTY, a line every ~10% otherwise
 * (so CI logs and pipes stay readable). Writes to stderr, leaving stdout for results/JSON.
 */
export class ProgressBar {
  private readonly tty: boolean;
  private lastPct = -1;
  private readonly start = Date.now();

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly enabled = true,
  ) {
    this.tty = Boolean(stream.isTTY);
  }

  update(done: number, info = ''): void {
    if (!this.enabled) return;
    const frac = this.total > 0 ? Math.min(1, done / this.total) : 1;
    const pct = Math.floor(frac * 100);
    const elapsed = (Date.now() - this.start) / 1000;
    const eta = frac > 0 ? elapsed * (1 / frac - 1) : 0;
    const text = `${this.label} ${done}/${this.total} ${pct}% · ${fmtTime(elapsed)} elapsed · eta ${fmtTime(eta)}${info ? ' · ' + info : ''}`;
    if (this.tty) {
      const width = 24;
      const filled = Math.round(frac * width);
      const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
      this.stream.write(`\r\x1b[2K${bar} ${text}`);
      if (done >= this.total) this.stream.write('\n');
    } else if (pct >= this.lastPct + 10 || done >= this.total) {
      this.lastPct = pct - (pct % 10);
      this.stream.write(text + '\n');
    }
  }
}

export function fmtTime(sec: number): string {
  if (!Number.isFinite(sec)) return '?';
  if (sec < 60) return `${sec.toFixed(0)}s`;
  const m = Math.floor(sec / 60);
  return `${m}m${String(Math.round(sec - m * 60)).padStart(2, '0')}s`;
}
