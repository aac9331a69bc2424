// The bucket map: one cell per bucket of the group's current table, coloured by its owner;
// hovering (or moving with the arrow keys once the map has the focus) names the bucket's owner
// and backup. Buckets a running transition fills are drawn lighter, buckets a verification
// found differing are outlined in red. The legend beside it says the same in text (owned and
// backed-up buckets per member) for those who do not see the colours.
//
// For tests and scripts the figure carries data-epoch, data-owners (members owning at least
// one bucket) and data-owned (JSON: buckets per owner).

import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { BucketMap } from "../../../src/api/types.js";
import { NO_OWNER_COLOUR, num } from "../format.js";

interface Decoded {
  owner: Int16Array;
  backup: Int16Array;
  filling: Uint8Array | null;
  owned: Map<string, number>;
  backedUp: Map<string, number>;
  fillingCount: number;
}

function bytesOf(base64: string): Uint8Array {
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/** Little-endian int16 per bucket, as the API encodes owner and backup (-1: none). */
function rolesOf(base64: string, bucketCount: number): Int16Array {
  const bytes = bytesOf(base64);
  const roles = new Int16Array(bucketCount).fill(-1);
  const n = Math.min(bucketCount, bytes.length >> 1);
  for (let b = 0; b < n; b++) roles[b] = ((bytes[b * 2]! | (bytes[b * 2 + 1]! << 8)) << 16) >> 16;
  return roles;
}

function decode(map: BucketMap): Decoded {
  const owner = rolesOf(map.owner, map.bucketCount);
  const backup = rolesOf(map.backup, map.bucketCount);
  const filling = map.filling === "" ? null : bytesOf(map.filling);
  const owned = new Map<string, number>();
  const backedUp = new Map<string, number>();
  let fillingCount = 0;
  for (let b = 0; b < map.bucketCount; b++) {
    const o = map.members[owner[b]!];
    if (o !== undefined) owned.set(o, (owned.get(o) ?? 0) + 1);
    const k = map.members[backup[b]!];
    if (k !== undefined) backedUp.set(k, (backedUp.get(k) ?? 0) + 1);
    if (filling !== null && ((filling[b >> 3]! >> (b & 7)) & 1) === 1) fillingCount++;
  }
  return { owner, backup, filling, owned, backedUp, fillingCount };
}

/** Columns: a power of two near sqrt(2 * buckets), so the map is about twice as wide as high. */
function columnsOf(bucketCount: number): number {
  return 2 ** Math.ceil(Math.log2(Math.sqrt(bucketCount * 2)));
}

export function BucketMapView(props: { map: BucketMap | null; colours: Map<string, string>; marked?: ReadonlySet<number> }) {
  const { map, colours, marked } = props;
  const decoded = useMemo(() => (map === null ? null : decode(map)), [map]);
  const canvas = useRef<HTMLCanvasElement>(null);
  const box = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(720);
  const [cursor, setCursor] = useState<number | null>(null);

  useEffect(() => {
    const el = box.current;
    if (el === null) return;
    const observer = new ResizeObserver(() => setWidth(Math.max(160, Math.floor(el.clientWidth))));
    observer.observe(el);
    return () => observer.disconnect();
  }, []);

  const bucketCount = map?.bucketCount ?? 0;
  const cols = bucketCount === 0 ? 1 : columnsOf(bucketCount);
  const rows = Math.max(1, Math.ceil(bucketCount / cols));
  const cell = Math.max(1, Math.floor(width / cols));

  useEffect(() => {
    const c = canvas.current;
    if (c === null || map === null || decoded === null) return;
    c.width = cols * cell;
    c.height = rows * cell;
    const ctx = c.getContext("2d");
    if (ctx === null) return;
    ctx.clearRect(0, 0, c.width, c.height);
    let style = "";
    for (let b = 0; b < map.bucketCount; b++) {
      const o = map.members[decoded.owner[b]!];
      const colour = o === undefined ? NO_OWNER_COLOUR : (colours.get(o) ?? NO_OWNER_COLOUR);
      if (colour !== style) {
        ctx.fillStyle = colour;
        style = colour;
      }
      ctx.fillRect((b % cols) * cell, Math.floor(b / cols) * cell, cell, cell);
    }
    if (decoded.filling !== null && cell >= 2) {
      ctx.fillStyle = "rgba(255,255,255,0.55)";
      for (let b = 0; b < map.bucketCount; b++) {
        if (((decoded.filling[b >> 3]! >> (b & 7)) & 1) === 1) ctx.fillRect((b % cols) * cell, Math.floor(b / cols) * cell, cell, cell);
      }
    }
    if (marked !== undefined && marked.size > 0) {
      ctx.strokeStyle = "#c00000";
      ctx.lineWidth = Math.max(1, Math.floor(cell / 3));
      for (const b of marked) if (b < map.bucketCount) ctx.strokeRect((b % cols) * cell, Math.floor(b / cols) * cell, cell, cell);
    }
    if (cursor !== null && cursor < map.bucketCount) {
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 1;
      ctx.strokeRect((cursor % cols) * cell - 1.5, Math.floor(cursor / cols) * cell - 1.5, cell + 3, cell + 3);
    }
  }, [map, decoded, colours, cols, rows, cell, marked, cursor]);

  if (map === null || decoded === null) {
    return (
      <figure class="bucket-map" data-owners="0">
        <p class="muted">No bucket table yet (the group has no members in its table).</p>
      </figure>
    );
  }

  const bucketAt = (x: number, y: number): number | null => {
    const b = Math.floor(y / cell) * cols + Math.floor(x / cell);
    return x >= 0 && y >= 0 && Math.floor(x / cell) < cols && b < map.bucketCount ? b : null;
  };
  const onKey = (e: KeyboardEvent) => {
    const step: Record<string, number> = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols, PageDown: cols * 8, PageUp: -cols * 8 };
    const d = step[e.key];
    if (d === undefined) return;
    e.preventDefault();
    setCursor((c) => Math.min(map.bucketCount - 1, Math.max(0, (c ?? 0) + d)));
  };
  const owners = [...decoded.owned.keys()].sort();
  const legendMembers = [...new Set([...colours.keys(), ...map.members])].sort();
  const about =
    cursor === null
      ? "Point at a bucket (or focus the map and use the arrow keys) to see its owner and backup."
      : `Bucket ${cursor}: owner ${map.members[decoded.owner[cursor]!] ?? "none"}, backup ${map.members[decoded.backup[cursor]!] ?? "none"}${
          decoded.filling !== null && ((decoded.filling[cursor >> 3]! >> (cursor & 7)) & 1) === 1 ? " (being filled)" : ""
        }${marked?.has(cursor) === true ? " — differs between owner and backup" : ""}`;
  return (
    <figure class="bucket-map" data-epoch={map.epoch} data-owners={owners.length} data-owned={JSON.stringify(Object.fromEntries(decoded.owned))}>
      <div class="bucket-map-body">
        <div class="bucket-canvas" ref={box}>
          <canvas
            ref={canvas}
            tabIndex={0}
            role="img"
            aria-label={`Bucket map, epoch ${map.epoch}: ${map.bucketCount} buckets owned by ${owners.map((o) => `${o} ${decoded.owned.get(o)}`).join(", ")}`}
            onMouseMove={(e) => setCursor(bucketAt(e.offsetX, e.offsetY))}
            onMouseLeave={() => setCursor(null)}
            onKeyDown={onKey}
          />
          <p class="bucket-about" data-testid="bucket-about">
            {about}
          </p>
        </div>
        <table class="legend">
          <caption>
            Epoch {map.epoch}, {num(map.bucketCount)} buckets{decoded.fillingCount > 0 ? `, ${num(decoded.fillingCount)} being filled` : ""}
          </caption>
          <thead>
            <tr>
              <th scope="col">Member</th>
              <th scope="col">Owns</th>
              <th scope="col">Backs up</th>
            </tr>
          </thead>
          <tbody>
            {legendMembers.map((m) => (
              <tr key={m}>
                <th scope="row">
                  <span class="swatch" style={{ background: colours.get(m) ?? NO_OWNER_COLOUR }} aria-hidden="true" />
                  {m}
                </th>
                <td>{num(decoded.owned.get(m) ?? 0)}</td>
                <td>{num(decoded.backedUp.get(m) ?? 0)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </figure>
  );
}
