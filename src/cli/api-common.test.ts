import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { serverOf, tokenOf } from "./api-common.js";
import { parseInterfaceSpec } from "./inventory-commands.js";
import { parseListen } from "./orchestrator.js";

const dir = mkdtempSync(join(tmpdir(), "tandem-cli-common-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("server and token resolution", () => {
  it("prefers flags, then the environment, then DIR/admin-token", () => {
    writeFileSync(join(dir, "admin-token"), "from-file\n");
    expect(tokenOf({ token: "flag", dataDir: dir }, { TANDEM_TOKEN: "env" })).toBe("flag");
    expect(tokenOf({ dataDir: dir }, { TANDEM_TOKEN: "env" })).toBe("env");
    expect(tokenOf({ dataDir: dir }, {})).toBe("from-file");
    expect(tokenOf({}, { TANDEM_DATA_DIR: dir })).toBe("from-file");
    expect(tokenOf({}, {})).toBeNull();
    expect(() => tokenOf({ dataDir: join(dir, "nope") }, {})).toThrow(/TANDEM_FILE_NOT_FOUND|cannot read the token file/);
    expect(serverOf({}, {})).toBe("http://127.0.0.1:7470");
    expect(serverOf({}, { TANDEM_SERVER: "http://h:1" })).toBe("http://h:1");
    expect(serverOf({ server: "http://f:2" }, { TANDEM_SERVER: "http://h:1" })).toBe("http://f:2");
    expect(() => serverOf({ server: "h:1" }, {})).toThrow(/http/);
  });
});

describe("option parsers", () => {
  it("reads --interface and --listen", () => {
    expect(parseInterfaceSpec("name=lan,vni=100,site=10.0.0.2,gateway=198.18.0.1/24")).toEqual({ name: "lan", vni: 100, siteEndpoint: "10.0.0.2", gateway: "198.18.0.1/24" });
    expect(() => parseInterfaceSpec("name=lan,vni=100")).toThrow(/site= is required/);
    expect(() => parseInterfaceSpec("name=lan,colour=red")).toThrow(/unknown key "colour"/);
    expect(parseListen("127.0.0.1:0")).toEqual({ host: "127.0.0.1", port: 0 });
    expect(parseListen("[::1]:7470")).toEqual({ host: "::1", port: 7470 });
    expect(() => parseListen("localhost")).toThrow(/HOST:PORT/);
    expect(() => parseListen("h:70000")).toThrow(/port/);
  });
});
