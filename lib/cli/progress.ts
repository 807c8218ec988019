/**
 * Progress on stderr: one line rewritten in place on a terminal, plain lines at most once
 * per `intervalMs` otherwise (logs and pipes get no carriage returns).
 */
export class ProgressLine {
  private readonly tty: boolean;
  private lastPrint = 0;
  private shown = false;

  constructor(
    private readonly prefix: string,
    private readonly intervalMs = 1000,
    stream: NodeJS.WriteStream = process.stderr,
  ) {
    this.tty = stream.isTTY === true;
    this.stream = stream;
  }

  private readonly stream: NodeJS.WriteStream;

  /** Shows `text`; on a TTY at most every 100 ms, otherwise every intervalMs. */
  update(text: string, force = false): void {
    const now = Date.now();
    const every = this.tty ? 100 : this.intervalMs;
    if (!force && now - this.lastPrint < every) return;
    this.lastPrint = now;
    if (this.tty) {
      this.stream.write(`\r\x1b[K${this.prefix}${text}`);
      this.shown = true;
    } else {
      this.stream.write(`${this.prefix}${text}\n`);
    }
  }

  /** Clears the line on a terminal, so results start on a clean line. */
  done(): void {
    if (this.tty && this.shown) this.stream.write('\r\x1b[K');
    this.shown = false;
  }
}

/** `[#####     ]  50%` */
export function bar(fraction: number, width = 20): string {
  const f = Math.min(1, Math.max(0, fraction));
  const filled = Math.round(f * width);
  return `[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${String(Math.round(f * 100)).padStart(3)}%`;
}
