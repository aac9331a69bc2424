// Installed releases and the CURRENT switch of a rolling upgrade.

import { mkdirSync, mkdtempSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { cliEntryOf, pointLink, releaseDir, switchRelease } from "./releases.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function install(releases: string, version: string): string {
  const root = join(releases, version);
  mkdirSync(join(root, "dist", "src", "cli"), { recursive: true });
  writeFileSync(cliEntryOf(root), "// entry\n");
  return root;
}

function codeOf(f: () => unknown): string | null {
  try {
    f();
    return null;
  } catch (error) {
    expect(error).toBeInstanceOf(TandemError);
    return (error as TandemError).code;
  }
}

describe("releases", () => {
  it("switches CURRENT to an installed release, and back", () => {
    const base = mkdtempSync(join(tmpdir(), "tandem-releases-"));
    dirs.push(base);
    const releases = join(base, "releases");
    const v1 = install(releases, "0.1.0");
    const v2 = install(releases, "0.2.0-rc.1");
    const current = join(base, "current");
    pointLink(current, v1);
    expect(switchRelease(releases, current, "0.2.0-rc.1")).toBe(v2);
    expect(readlinkSync(current)).toBe(v2);
    switchRelease(releases, current, "0.1.0");
    expect(readlinkSync(current)).toBe(v1);
  });

  it("refuses a release that is not installed, leaving CURRENT as it was", () => {
    const base = mkdtempSync(join(tmpdir(), "tandem-releases-"));
    dirs.push(base);
    const releases = join(base, "releases");
    const v1 = install(releases, "0.1.0");
    mkdirSync(join(releases, "0.3.0")); // a directory without a build
    const current = join(base, "current");
    pointLink(current, v1);
    expect(codeOf(() => switchRelease(releases, current, "9.9.9"))).toBe(ErrorCode.FILE_NOT_FOUND);
    expect(codeOf(() => switchRelease(releases, current, "0.3.0"))).toBe(ErrorCode.FILE_NOT_FOUND);
    expect(readlinkSync(current)).toBe(v1);
  });

  it("refuses versions that are not plain names (they come from the network)", () => {
    for (const bad of ["../0.1.0", "..", "a/b", "", " 1.0", "1.0/..", "x".repeat(65)]) {
      expect(codeOf(() => releaseDir("/opt/tandem/releases", bad)), bad).toBe(ErrorCode.INVALID_ARGUMENT);
    }
  });
});
