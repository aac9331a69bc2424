// The software version this build runs: the `version` of the package.json at the root of the
// build (found by walking up from this file, so it holds for sources under vitest, for dist/
// and for a release installed elsewhere). Members report it with their heartbeats; a rolling
// upgrade moves a group from one such version to another. Read once, at first use.

import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

let cached: { version: string; root: string } | null = null;

function find(): { version: string; root: string } {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const file = join(dir, "package.json");
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, "utf8")) as { name?: unknown; version?: unknown };
      if (pkg.name === "tandem" && typeof pkg.version === "string") return { version: pkg.version, root: dir };
    }
    dir = dirname(dir);
  }
  throw new Error(`no tandem package.json above ${fileURLToPath(import.meta.url)}`);
}

/** This build's software version, e.g. "0.1.0". */
export function softwareVersion(): string {
  cached ??= find();
  return cached.version;
}

/** The root directory of this build (where its package.json is). */
export function softwareRoot(): string {
  cached ??= find();
  return cached.root;
}
