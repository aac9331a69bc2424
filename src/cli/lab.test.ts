// `tandem lab` argument parsing and the status text people read (no root needed).

import { describe, expect, it } from "vitest";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { formatLabStatus, parseDistributor } from "./lab.js";

describe("tandem lab", () => {
  it("parses --distributor with and without a port", () => {
    expect(parseDistributor("198.18.0.1:4790")).toEqual({ address: "198.18.0.1", port: 4790 });
    expect(parseDistributor("198.18.0.1")).toEqual({ address: "198.18.0.1", port: 4789 });
  });

  it.each(["198.18.0.1:0", "198.18.0.1:70000", "host:4789", "198.18.0:4789", ""])("refuses --distributor %j", (text) => {
    let code: string | null = null;
    try {
      parseDistributor(text);
    } catch (error) {
      if (!(error instanceof TandemError)) throw error;
      code = error.code;
    }
    expect(code).toBe(ErrorCode.INVALID_ARGUMENT);
  });

  it("prints a down lab in one line and an up lab as tables", () => {
    expect(formatLabStatus({ up: false, bridge: null, bridgeAddresses: [], hosts: [], members: [], problems: [] })).toBe("lab: down (nothing named tdm- exists)\n");
    const text = formatLabStatus({
      up: true,
      bridge: "tdm-br0",
      bridgeAddresses: ["198.18.0.1/24"],
      hosts: [{ name: "client", namespace: "tdm-client", underlay: "198.18.0.11", address: "198.19.1.10/24", gateway: "198.19.1.1", vni: 101, sitePort: 4789, distributor: { address: "198.18.0.1", port: 4789 } }],
      members: [{ name: "m1", namespace: "tdm-m1", underlay: "198.18.0.21" }],
      problems: ["link tdm-x belongs to no lab namespace"],
    });
    expect(text.split("\n")[0]).toBe("lab: up, bridge tdm-br0 198.18.0.1/24");
    expect(text).toContain("client  tdm-client  198.18.0.11  101  198.19.1.10/24  198.19.1.1  198.18.0.1:4789 (listens 4789)");
    expect(text).toContain("m1      tdm-m1     198.18.0.21");
    expect(text).toContain("problem: link tdm-x belongs to no lab namespace");
  });
});
