// Big-endian integer reads and writes on a Uint8Array, and unsigned range checks, for wire
// formats on the hot path (no DataView, so nothing is allocated). Range checks are integer
// identities: cheaper than Number.isInteger, and false for fractions, negatives, NaN and
// anything too large.

export function w16(buf: Uint8Array, offset: number, value: number): void {
  buf[offset] = value >>> 8;
  buf[offset + 1] = value;
}

export function w32(buf: Uint8Array, offset: number, value: number): void {
  buf[offset] = value >>> 24;
  buf[offset + 1] = value >>> 16;
  buf[offset + 2] = value >>> 8;
  buf[offset + 3] = value;
}

export function r16(buf: Uint8Array, offset: number): number {
  return (buf[offset]! << 8) | buf[offset + 1]!;
}

export function r32(buf: Uint8Array, offset: number): number {
  return ((buf[offset]! << 24) | (buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!) >>> 0;
}

export function isU32(n: number): boolean {
  return n >>> 0 === n;
}

export function isU16(n: number): boolean {
  return (n & 0xffff) === n;
}

export function isU8(n: number): boolean {
  return (n & 0xff) === n;
}
