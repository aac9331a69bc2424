// Tests for the packet builder's own promises: exact header bytes for a few layouts, flag
// letters, link types, VXLAN wrapping and clear errors on bad input. Round trips through the
// parser live in parse.test.ts; checksums are checked against known answers in checksum.test.ts.

import { describe, expect, it } from "vitest";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { packet, parseMac, tcpFlagsOf } from "./builder.js";
import { LinkType, TcpFlag } from "./view.js";

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("hex");
}

describe("packet builder", () => {
  it("writes Ethernet, two VLAN tags and the EtherType in order", () => {
    const frame = packet()
      .ethernet({ src: "02:00:00:00:00:aa", dst: "02:00:00:00:00:bb" })
      .vlan(10, { tpid: 0x88a8, pcp: 5 })
      .vlan(20)
      .ipv4({ src: "198.18.0.1", dst: "198.19.0.1" })
      .build();
    expect(hex(frame.subarray(0, 23))).toBe("0200000000bb" + "0200000000aa" + "88a8" + "a00a" + "8100" + "0014" + "0800" + "45");
  });

  it("maps flag letters to bits and rejects unknown letters", () => {
    expect(tcpFlagsOf("SA")).toBe(TcpFlag.SYN | TcpFlag.ACK);
    expect(tcpFlagsOf("FA")).toBe(TcpFlag.FIN | TcpFlag.ACK);
    expect(tcpFlagsOf("R")).toBe(TcpFlag.RST);
    expect(tcpFlagsOf("SAFRPUEC")).toBe(0xff);
    expect(tcpFlagsOf("")).toBe(0);
    expect(tcpFlagsOf(0x112)).toBe(0x12);
    expect(() => tcpFlagsOf("SX")).toThrow(TandemError);
  });

  it("encodes Linux-style SYN options padded to 4 bytes", () => {
    const frame = packet().ipv4({ src: "198.18.0.1", dst: "198.19.0.1" }).tcp({ sport: 1, dport: 2, options: { mss: 1460, sackPerm: true, ts: [1, 2], wscale: 7 } }).build();
    expect(frame[20 + 12]! >>> 4).toBe(10);
    expect(hex(frame.subarray(40, 60))).toBe("020405b4" + "0402" + "080a0000000100000002" + "01030307");
  });

  it("reports the link type of its output", () => {
    expect(packet().ipv4({ src: "198.18.0.1", dst: "198.19.0.1" }).linkType()).toBe(LinkType.RAW);
    expect(packet().ethernet().ipv4({ src: "198.18.0.1", dst: "198.19.0.1" }).linkType()).toBe(LinkType.ETHERNET);
    expect(packet().linuxSll(1).ipv4({ src: "198.18.0.1", dst: "198.19.0.1" }).linkType()).toBe(LinkType.LINUX_SLL);
    expect(packet().linuxSll(2).ipv4({ src: "198.18.0.1", dst: "198.19.0.1" }).linkType()).toBe(LinkType.LINUX_SLL2);
  });

  it("wraps an inner frame in VXLAN over UDP 4789", () => {
    const inner = packet().ethernet().ipv4({ src: "198.18.1.1", dst: "198.18.1.2" }).udp({ sport: 1, dport: 2 });
    const innerBytes = inner.build();
    const frame = packet().ipv4({ src: "198.18.0.1", dst: "198.19.0.1" }).vxlan({ vni: 0x010203, inner }).build();
    expect(hex(frame.subarray(20, 36))).toBe("c000" + "12b5" + (8 + 8 + innerBytes.length).toString(16).padStart(4, "0") + hex(frame.subarray(26, 28)) + "08000000" + "01020300");
    expect(frame.subarray(36)).toEqual(innerBytes);
  });

  it("sets the IPv4 fragment fields and IPv6 payload length", () => {
    const v4 = packet().ipv4({ src: "198.18.0.1", dst: "198.19.0.1", df: true, mf: true, fragmentOffset: 1480, id: 0xabcd }).build();
    expect(hex(v4.subarray(4, 8))).toBe("abcd" + (0x4000 | 0x2000 | 185).toString(16));
    const v6 = packet().ipv6({ src: "2001:db8::1", dst: "2001:db8::2", trafficClass: 0xb8, flowLabel: 0x12345 }).payload("abc").build();
    expect(hex(v6.subarray(0, 8))).toBe("6b812345" + "0003" + "3b40");
  });

  it("rejects malformed addresses with an operating error", () => {
    expect(() => parseMac("02:00:00:00:00")).toThrow(TandemError);
    try {
      packet().ipv4({ src: "198.18.0.256", dst: "198.19.0.1" }).build();
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(TandemError);
      expect((error as TandemError).code).toBe(ErrorCode.INVALID_ARGUMENT);
    }
    expect(() => packet().ipv6({ src: "2001:db8::g", dst: "::1" }).build()).toThrow(TandemError);
  });

  it("refuses impossible layer combinations (programmer errors)", () => {
    expect(() => packet().vlan(1).ipv4({ src: "198.18.0.1", dst: "198.19.0.1" }).build()).toThrow(/VLAN tags need a link layer/);
    expect(() => packet().ipv4({ src: "198.18.0.1", dst: "198.19.0.1" }).icmpv6({ type: 128 }).build()).toThrow(/ICMPv6 over IPv4/);
    expect(() => packet().tcp({ sport: 1, dport: 2 }).ethernet({ etherType: 0x0800 }).build()).toThrow(/needs an IP layer/);
  });
});
