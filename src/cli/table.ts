// A small table formatter for the CLI: columns padded to their widest cell, numbers right-
// aligned, a header line. No colours: output must read the same in a pipe and a terminal.

export type Cell = string | number | boolean | null | undefined;

export interface TableOptions {
  /** Column indexes aligned right (default: columns whose every cell is a number). */
  right?: number[];
  /** Text for empty cells (null/undefined). */
  empty?: string;
}

function text(cell: Cell, empty: string): string {
  if (cell === null || cell === undefined) return empty;
  if (typeof cell === "boolean") return cell ? "yes" : "no";
  return String(cell);
}

/** Rows under a header, one line each, ending with a newline ("(none)" when there are no rows). */
export function formatTable(header: readonly string[], rows: readonly (readonly Cell[])[], options: TableOptions = {}): string {
  const empty = options.empty ?? "-";
  if (rows.length === 0) return `${header.join("  ")}\n(none)\n`;
  const cells = rows.map((row) => header.map((_, i) => text(row[i], empty)));
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((row) => row[i]!.length)));
  const right = new Set(options.right ?? header.map((_, i) => i).filter((i) => rows.every((row) => typeof row[i] === "number" || row[i] === null || row[i] === undefined) && rows.some((row) => typeof row[i] === "number")));
  const line = (values: readonly string[]): string =>
    values
      .map((v, i) => (right.has(i) ? v.padStart(widths[i]!) : i === values.length - 1 ? v : v.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return `${[line(header), ...cells.map(line)].join("\n")}\n`;
}

/** "key: value" lines, keys padded. */
export function formatFields(fields: readonly (readonly [string, Cell])[], empty = "-"): string {
  const width = Math.max(...fields.map(([k]) => k.length));
  return `${fields.map(([k, v]) => `${`${k}:`.padEnd(width + 1)} ${text(v, empty)}`).join("\n")}\n`;
}

/** 1234567 -> "1.23M", for rates and counts in narrow columns. */
export function compact(value: number | null | undefined): string {
  if (value === null || value === undefined) return "-";
  const abs = Math.abs(value);
  if (abs >= 1e9) return `${(value / 1e9).toFixed(2)}G`;
  if (abs >= 1e6) return `${(value / 1e6).toFixed(2)}M`;
  if (abs >= 1e4) return `${(value / 1e3).toFixed(1)}k`;
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}
