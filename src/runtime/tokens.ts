// API bearer tokens: roles, generation, hashing and the in-memory registry the daemon keeps
// beside the store's "tokens" collection.
//
// Invariants kept: a token's secret is never stored or logged, only its SHA-256 (hex); the
// registry maps each hash to exactly one named principal; names are unique; there is always at
// least one admin token once the daemon is active (the last one cannot be revoked). Tokens are
// 32 random bytes, base64url: guessing one is hopeless, so a plain hash (no salt, no stretching)
// is enough and lets a request be authenticated with one map lookup.

import { createHash, randomBytes } from "node:crypto";
import type { Document } from "../store/store.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";

/**
 * admin ⊃ operator ⊃ monitor. "member" is apart: a member process reporting heartbeats, fills
 * and verification results for the appliance its token is named after, and nothing else.
 */
export const ROLES = ["admin", "operator", "monitor", "member"] as const;
export type Role = (typeof ROLES)[number];

/** What a route needs; "member" routes also accept operator and admin tokens. */
export type Access = "public" | Role;

export interface Principal {
  name: string;
  role: Role;
}

export interface TokenInfo {
  name: string;
  role: Role;
  createdAt: string;
  createdBy: string;
}

const RANK: Record<Role, number> = { member: 0, monitor: 1, operator: 2, admin: 3 };

/** True when a token of `role` may call a route that needs `access`. */
export function allows(role: Role, access: Access): boolean {
  if (access === "public") return true;
  if (access === "member") return role === "member" || role === "operator" || role === "admin";
  if (role === "member") return false;
  return RANK[role] >= RANK[access];
}

export function isRole(value: unknown): value is Role {
  return typeof value === "string" && (ROLES as readonly string[]).includes(value);
}

/** A fresh token: 32 random bytes, base64url (43 characters). */
export function newTokenSecret(): string {
  return randomBytes(32).toString("base64url");
}

export function hashToken(secret: string): string {
  return createHash("sha256").update(secret, "utf8").digest("hex");
}

export const TOKENS_MAX = 10_000;
export const ADMIN_TOKEN_NAME = "admin";

export function tokenDocument(info: TokenInfo, sha256: string): Document {
  return { id: info.name, name: info.name, role: info.role, sha256, createdAt: info.createdAt, createdBy: info.createdBy };
}

/** The tokens the daemon knows, by hash and by name. Changed only after a committed mutation. */
export class TokenRegistry {
  private readonly byHash = new Map<string, Principal>();
  private readonly byName = new Map<string, { info: TokenInfo; sha256: string }>();

  /** Loads the store's "tokens" documents; a malformed one means the store is corrupt. */
  static fromDocuments(docs: readonly Document[]): TokenRegistry {
    const registry = new TokenRegistry();
    for (const doc of docs) {
      const { name, role, sha256, createdAt, createdBy } = doc as Record<string, unknown>;
      if (typeof name !== "string" || !isRole(role) || typeof sha256 !== "string" || !/^[0-9a-f]{64}$/.test(sha256)) {
        throw new TandemError(ErrorCode.STORE_CORRUPT, `store document tokens/${doc.id} is not a token (name, role, sha256)`, { collection: "tokens", id: doc.id });
      }
      registry.put(
        { name, role, createdAt: typeof createdAt === "string" ? createdAt : "", createdBy: typeof createdBy === "string" ? createdBy : "" },
        sha256,
      );
    }
    return registry;
  }

  get size(): number {
    return this.byName.size;
  }

  authenticate(secret: string): Principal | null {
    return this.byHash.get(hashToken(secret)) ?? null;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  adminCount(): number {
    let count = 0;
    for (const t of this.byName.values()) if (t.info.role === "admin") count++;
    return count;
  }

  infoOf(name: string): TokenInfo | null {
    return this.byName.get(name)?.info ?? null;
  }

  list(): TokenInfo[] {
    return [...this.byName.values()].map((t) => ({ ...t.info })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  put(info: TokenInfo, sha256: string): void {
    const old = this.byName.get(info.name);
    if (old !== undefined) this.byHash.delete(old.sha256);
    this.byName.set(info.name, { info, sha256 });
    this.byHash.set(sha256, { name: info.name, role: info.role });
  }

  remove(name: string): void {
    const old = this.byName.get(name);
    if (old === undefined) return;
    this.byHash.delete(old.sha256);
    this.byName.delete(name);
  }
}
