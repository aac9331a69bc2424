// Installed releases of Tandem on an appliance, and the switch a rolling upgrade makes.
//
// Layout (the appliance agent's, e.g. /opt/tandem; `tandem up` makes one under its data dir):
//   RELEASES/<version>/       an installed build: package.json (with that version), dist/, node_modules/
//   CURRENT -> RELEASES/<v>   the symlink the supervisor starts `tandem member` through
// A member asked to restart on version V checks that RELEASES/V holds a build, points CURRENT
// at it (a new symlink renamed over the old one: atomic, never a moment without CURRENT), and
// exits with RESTART_EXIT_CODE; its supervisor (systemd with Restart=always, or `tandem up`)
// starts it again through CURRENT, now the new build. Rolling back is the same switch the
// other way. The version comes from the orchestrator, so it is checked to be a plain name
// before it becomes a path.

import { existsSync, lstatSync, renameSync, rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { ErrorCode, TandemError } from "../stdx/errors.js";

/** Exit code of a member that stopped to be restarted on another release (EX_TEMPFAIL). */
export const RESTART_EXIT_CODE = 75;

const VERSION_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;

/** The CLI entry of a release under a releases directory (or under a CURRENT link). */
export function cliEntryOf(root: string): string {
  return join(root, "dist", "src", "cli", "main.js");
}

/** Checks that a version is a plain name, safe as a path component. */
export function releaseName(version: string): string {
  if (!VERSION_PATTERN.test(version) || version.includes("..")) {
    throw new TandemError(ErrorCode.INVALID_ARGUMENT, `version "${version}" is not a plain release name (letters, digits, . _ + -)`, { version });
  }
  return version;
}

/** RELEASES/<version>, after checking the version is a plain name and a build is installed there. */
export function releaseDir(releasesDir: string, version: string): string {
  const dir = join(releasesDir, releaseName(version));
  if (!existsSync(cliEntryOf(dir))) {
    throw new TandemError(ErrorCode.FILE_NOT_FOUND, `no release ${version} installed: ${cliEntryOf(dir)} does not exist`, { version, releasesDir });
  }
  return dir;
}

/** Points `link` at `target` atomically (a temporary symlink renamed over it). */
export function pointLink(link: string, target: string): void {
  const tmp = `${link}.${process.pid}.tmp`;
  if (existsSync(tmp) || isSymlink(tmp)) rmSync(tmp, { force: true });
  symlinkSync(target, tmp);
  renameSync(tmp, link);
}

function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false; // absent
  }
}

/** Makes CURRENT point at RELEASES/<version>; throws (with the reason to report) when it cannot. */
export function switchRelease(releasesDir: string, currentLink: string, version: string): string {
  const dir = releaseDir(releasesDir, version);
  pointLink(currentLink, dir);
  return dir;
}
