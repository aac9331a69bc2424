// The symmetric flow hash: one 32-bit value per flow, the same for both directions.
//
// It decides a connection's bucket (distribution) and its home slot in the connection table,
// so both directions of a flow meet on one member and in one table entry. Symmetry comes from
// ordering the two endpoints before mixing: (addr, port) pairs are compared and the smaller
// one is mixed first. The cluster seed keys the hash so that an outsider cannot aim traffic
// at one bucket. Zone is not hashed: it is compared on lookup, not used for placement.
//
// Two entry points must agree bit for bit (a property test checks it): flowHashOfView for the
// per-packet path (no allocation) and flowHashOfKey for slow paths (API, sync, tests).

import { fmix32, mixWord } from "../stdx/hash.js";
import { readU32 } from "./addr.js";
import type { PacketView } from "./view.js";

/** A flow named in ordinary values, for slow paths. Addresses are 4 or 16 bytes. */
export interface FlowKey {
  zone: number;
  protocol: number;
  src: Uint8Array;
  dst: Uint8Array;
  srcPort: number;
  dstPort: number;
}

/**
 * Compares endpoint (a, pa) with (b, pb) over `words` 32-bit address words read from two
 * offsets of one buffer. Returns true when a sorts after b (so the pair must be swapped).
 */
function endpointAfter(buf: Uint8Array, aOffset: number, bOffset: number, words: number, pa: number, pb: number): boolean {
  for (let i = 0; i < words; i++) {
    const a = readU32(buf, aOffset + i * 4);
    const b = readU32(buf, bOffset + i * 4);
    if (a !== b) return a > b;
  }
  return pa > pb;
}

function mixAddress(h: number, buf: Uint8Array, offset: number, words: number): number {
  for (let i = 0; i < words; i++) h = mixWord(h, readU32(buf, offset + i * 4));
  return h;
}

/**
 * Hash of (protocol, addresses, ports) from raw fields. `ports` false hashes addresses and
 * protocol only (used for IP fragments that carry no ports).
 */
export function flowHashRaw(
  seed: number,
  protocol: number,
  buf: Uint8Array,
  srcOffset: number,
  dstOffset: number,
  addressLength: number,
  srcPort: number,
  dstPort: number,
  ports = true,
): number {
  const words = addressLength >>> 2;
  let aOffset = srcOffset;
  let bOffset = dstOffset;
  let pa = ports ? srcPort : 0;
  let pb = ports ? dstPort : 0;
  if (endpointAfter(buf, aOffset, bOffset, words, pa, pb)) {
    aOffset = dstOffset;
    bOffset = srcOffset;
    const t = pa;
    pa = pb;
    pb = t;
  }
  let h = seed | 0;
  h = mixWord(h, (protocol << 8) | addressLength);
  h = mixAddress(h, buf, aOffset, words);
  h = mixAddress(h, buf, bOffset, words);
  h = mixWord(h, ((pa & 0xffff) << 16) | (pb & 0xffff));
  return fmix32(h ^ (addressLength * 2 + 8));
}

/** Fast path for IPv4: addresses as numbers. Equal to flowHashRaw for the same flow. */
export function flowHash4(seed: number, protocol: number, src: number, dst: number, srcPort: number, dstPort: number): number {
  let a = src >>> 0;
  let b = dst >>> 0;
  let pa = srcPort;
  let pb = dstPort;
  if (a > b || (a === b && pa > pb)) {
    a = dst >>> 0;
    b = src >>> 0;
    pa = dstPort;
    pb = srcPort;
  }
  let h = seed | 0;
  h = mixWord(h, (protocol << 8) | 4);
  h = mixWord(h, a);
  h = mixWord(h, b);
  h = mixWord(h, ((pa & 0xffff) << 16) | (pb & 0xffff));
  return fmix32(h ^ 16);
}

/** Flow hash of a parsed packet (ports included, as the view gives them). No allocation. */
export function flowHashOfView(seed: number, view: PacketView): number {
  if (view.ipVersion === 4) {
    return flowHash4(seed, view.protocol, view.src4, view.dst4, view.srcPort, view.dstPort);
  }
  return flowHashRaw(seed, view.protocol, view.buf, view.srcAddrOffset, view.dstAddrOffset, 16, view.srcPort, view.dstPort);
}

/** Flow hash of a FlowKey; agrees with flowHashOfView for the same flow. */
export function flowHashOfKey(seed: number, key: FlowKey): number {
  if (key.src.length === 4) {
    return flowHash4(seed, key.protocol, readU32(key.src, 0), readU32(key.dst, 0), key.srcPort, key.dstPort);
  }
  const buf = new Uint8Array(32);
  buf.set(key.src, 0);
  buf.set(key.dst, 16);
  return flowHashRaw(seed, key.protocol, buf, 0, 16, 16, key.srcPort, key.dstPort);
}
