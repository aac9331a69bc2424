import { describe, expect, it } from "vitest";
import { parseIp } from "../packet/addr.js";
import { cidrContains, formatNetwork, networkOf, parseCidr, v4Mask, v4RangeOf, v6Value, type Cidr } from "./cidr.js";

function cidr(text: string): Cidr {
  const parsed = parseCidr(text);
  if (typeof parsed === "string") throw new Error(parsed);
  return parsed;
}

describe("parseCidr", () => {
  it("reads addresses and prefixes of both families", () => {
    expect(cidr("10.1.2.0/24")).toMatchObject({ family: 4, length: 24, explicitLength: true, hostBitsSet: false });
    expect(cidr("10.1.2.3")).toMatchObject({ family: 4, length: 32, explicitLength: false, hostBitsSet: false });
    expect(cidr("0.0.0.0/0")).toMatchObject({ length: 0, hostBitsSet: false });
    expect(cidr("2001:db8::/32")).toMatchObject({ family: 6, length: 32, hostBitsSet: false });
    expect(cidr("::1")).toMatchObject({ family: 6, length: 128 });
    expect(cidr("10.1.2.3/24").hostBitsSet).toBe(true);
    expect(cidr("10.1.2.128/25").hostBitsSet).toBe(false);
    expect(cidr("10.1.2.129/25").hostBitsSet).toBe(true);
    expect(cidr("2001:db8::4000:0:0:0/65").hostBitsSet).toBe(true);
    expect(cidr("2001:db8:0:0:8000::/65").hostBitsSet).toBe(false);
  });

  it("returns a reason for bad text", () => {
    expect(parseCidr("10.0.0/8")).toMatch(/not an IPv4 or IPv6 address/);
    expect(parseCidr("10.0.0.0/33")).toMatch(/prefix length "33" is not in 0-32/);
    expect(parseCidr("::/129")).toMatch(/not in 0-128/);
    expect(parseCidr("10.0.0.0/")).toMatch(/prefix length/);
    expect(parseCidr("10.0.0.0/8/8")).toMatch(/prefix length/);
    expect(parseCidr("2001:db8::g/32")).toMatch(/not an IPv4 or IPv6/);
    expect(parseCidr("")).toMatch(/not an IPv4 or IPv6/);
  });
});

describe("networks", () => {
  it("clears host bits and formats", () => {
    expect(formatNetwork(cidr("10.1.2.3/8"))).toBe("10.0.0.0/8");
    expect(formatNetwork(cidr("2001:db8:ffff::1/33"))).toBe("2001:db8:8000::/33");
    expect([...networkOf(cidr("255.255.255.255/0"))]).toEqual([0, 0, 0, 0]);
  });

  it("contains", () => {
    expect(cidrContains(cidr("10.0.0.0/8"), parseIp("10.200.0.1")!)).toBe(true);
    expect(cidrContains(cidr("10.0.0.0/8"), parseIp("11.0.0.1")!)).toBe(false);
    expect(cidrContains(cidr("10.0.0.0/8"), parseIp("::a00:1")!)).toBe(false);
    expect(cidrContains(cidr("::/0"), parseIp("2001:db8::1")!)).toBe(true);
    expect(cidrContains(cidr("2001:db8::/127"), parseIp("2001:db8::1")!)).toBe(true);
    expect(cidrContains(cidr("2001:db8::/127"), parseIp("2001:db8::2")!)).toBe(false);
  });

  it("numeric forms", () => {
    expect(v4Mask(0)).toBe(0);
    expect(v4Mask(1)).toBe(0x80000000);
    expect(v4Mask(32)).toBe(0xffffffff);
    expect(v4RangeOf(cidr("10.0.0.0/8"))).toEqual([0x0a000000, 0x0affffff]);
    expect(v4RangeOf(cidr("0.0.0.0/0"))).toEqual([0, 0xffffffff]);
    expect(v4RangeOf(cidr("255.255.255.255"))).toEqual([0xffffffff, 0xffffffff]);
    expect(v6Value(parseIp("::1")!)).toBe(1n);
    expect(v6Value(parseIp("8000::")!)).toBe(1n << 127n);
  });
});
