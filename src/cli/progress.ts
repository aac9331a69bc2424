// Progress of long operations (apply, drain, verify). On a terminal one line redrawn in place
// with \r; in a pipe or a log, plain lines, only when the label changes or the percentage
// passes the next tenth, so a log stays short and still shows that things moved.

export interface ProgressStream {
  write(text: string): boolean;
  isTTY?: boolean;
  columns?: number;
}

const BAR_WIDTH = 24;

export class ProgressBar {
  private lastLabel = "";
  private lastTenth = -1;
  private drawn = false;

  constructor(
    private readonly stream: ProgressStream = process.stdout,
    private readonly tty: boolean = stream.isTTY === true,
  ) {}

  /** fraction 0..1; label says what is being waited for. */
  update(fraction: number, label: string): void {
    const f = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
    const percent = Math.floor(f * 100);
    if (this.tty) {
      const filled = Math.round(f * BAR_WIDTH);
      let line = `[${"#".repeat(filled)}${".".repeat(BAR_WIDTH - filled)}] ${String(percent).padStart(3)}% ${label}`;
      const columns = this.stream.columns ?? 100;
      if (line.length > columns - 1) line = line.slice(0, columns - 1);
      this.stream.write(`\r\x1b[2K${line}`);
      this.drawn = true;
      return;
    }
    const tenth = Math.floor(percent / 10);
    if (label === this.lastLabel && tenth === this.lastTenth) return;
    this.lastLabel = label;
    this.lastTenth = tenth;
    this.stream.write(`progress ${percent}% ${label}\n`);
  }

  /** Ends the bar (a newline on a terminal) and prints `message` when given. */
  finish(message?: string): void {
    if (this.tty && this.drawn) this.stream.write("\n");
    this.drawn = false;
    if (message !== undefined) this.stream.write(`${message}\n`);
  }
}
