// Who is signed in: the token (kept in sessionStorage, so it dies with the tab and is never
// sent anywhere but this origin's API), the client made from it, and the role the API gave.
// Every call the UI makes goes through TandemClient (src/api/client.ts), as the CLI's do.

import { TandemClient } from "../../src/api/client.js";
import type { Role } from "../../src/api/types.js";

const TOKEN_KEY = "tandem.token";

export interface Session {
  client: TandemClient;
  name: string;
  role: Role;
  /** Operators and admins act; monitors only read (the API refuses them anyway, 403). */
  canAct: boolean;
}

export function storedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function forgetToken(): void {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** Asks the API who the token is; keeps it only when it answers. Throws the API's TandemError. */
export async function signIn(token: string): Promise<Session> {
  const client = new TandemClient({ server: window.location.origin, token: token.trim(), timeoutMs: 15_000 });
  const who = await client.whoami();
  sessionStorage.setItem(TOKEN_KEY, token.trim());
  return { client, name: who.name, role: who.role, canAct: who.role === "operator" || who.role === "admin" };
}
