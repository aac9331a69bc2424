// CIDR text for configuration (policy address sets, interface addresses, static routes).
//
// Control-plane only: parsing allocates and returns error reasons as strings, so each caller
// can wrap them in its own TandemError naming the rule / route and field. The per-packet
// code never sees a Cidr; it works on the numeric forms the compilers derive from it.
//
// Invariant of a parsed Cidr: `bytes` has 4 (IPv4) or 16 (IPv6) bytes, 0 <= length <= 8 *
// bytes.length, and `hostBitsSet` tells whether any bit past `length` is one (the caller
// decides whether that is an error: a policy prefix must be a network, an interface
// address must be a host inside its network).

import { formatIp, parseIpv4, parseIpv6 } from "../packet/addr.js";

export interface Cidr {
  family: 4 | 6;
  /** The address as written (4 or 16 bytes); may have host bits set. */
  bytes: Uint8Array;
  /** Prefix length; a bare address gets the full length (32 or 128). */
  length: number;
  /** True when the text had an explicit "/length". */
  explicitLength: boolean;
  hostBitsSet: boolean;
}

/** Parses "a.b.c.d", "a.b.c.d/n", "x::y" or "x::y/n". Returns the Cidr or a reason it is not one. */
export function parseCidr(text: string): Cidr | string {
  const slash = text.indexOf("/");
  const addressText = slash < 0 ? text : text.slice(0, slash);
  const family: 4 | 6 = addressText.includes(":") ? 6 : 4;
  let bytes: Uint8Array;
  if (family === 4) {
    const value = parseIpv4(addressText);
    if (value === null) return `"${text}" is not an IPv4 or IPv6 address or prefix`;
    bytes = new Uint8Array([value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255]);
  } else {
    const parsed = parseIpv6(addressText);
    if (parsed === null) return `"${text}" is not an IPv4 or IPv6 address or prefix`;
    bytes = parsed;
  }
  const lengthMax = bytes.length * 8;
  let length = lengthMax;
  if (slash >= 0) {
    const lengthText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lengthText) || Number(lengthText) > lengthMax) {
      return `"${text}": prefix length "${lengthText}" is not in 0-${lengthMax}`;
    }
    length = Number(lengthText);
  }
  return { family, bytes, length, explicitLength: slash >= 0, hostBitsSet: hasHostBits(bytes, length) };
}

function hasHostBits(bytes: Uint8Array, length: number): boolean {
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, length - i * 8));
    const hostMask = 0xff >>> keep;
    if ((bytes[i]! & hostMask) !== 0) return true;
  }
  return false;
}

/** The network address of a Cidr: its bytes with the host bits cleared (a new array). */
export function networkOf(cidr: Cidr): Uint8Array {
  const out = new Uint8Array(cidr.bytes);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, cidr.length - i * 8));
    out[i] = out[i]! & ((0xff00 >>> keep) & 0xff);
  }
  return out;
}

/** "network/length" text of a Cidr (host bits cleared), for messages and display. */
export function formatNetwork(cidr: Cidr): string {
  return `${formatIp(networkOf(cidr))}/${cidr.length}`;
}

/** True when `address` (same family, 4 or 16 bytes) lies inside the Cidr's network. */
export function cidrContains(cidr: Cidr, address: Uint8Array): boolean {
  if (address.length !== cidr.bytes.length) return false;
  for (let i = 0; i < address.length; i++) {
    const keep = Math.max(0, Math.min(8, cidr.length - i * 8));
    const mask = (0xff00 >>> keep) & 0xff;
    if ((address[i]! & mask) !== (cidr.bytes[i]! & mask)) return false;
  }
  return true;
}

/** IPv4 bytes (4) as an unsigned 32-bit number. */
export function v4Value(bytes: Uint8Array): number {
  return ((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0;
}

/** IPv4 netmask for a prefix length 0..32 as an unsigned 32-bit number. */
export function v4Mask(length: number): number {
  return length === 0 ? 0 : (0xffffffff << (32 - length)) >>> 0;
}

/** 16 bytes as a 128-bit bigint (control plane only). */
export function v6Value(bytes: Uint8Array): bigint {
  let value = 0n;
  for (let i = 0; i < 16; i++) value = (value << 8n) | BigInt(bytes[i]!);
  return value;
}

/** IPv4 network of a Cidr as [lo, hi] inclusive unsigned numbers. */
export function v4RangeOf(cidr: Cidr): [number, number] {
  const lo = v4Value(cidr.bytes) & v4Mask(cidr.length);
  return [lo >>> 0, (lo >>> 0) + 2 ** (32 - cidr.length) - 1];
}
