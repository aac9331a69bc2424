// Connections: which member owns (and which backs up) the live connections matching an address
// and port. The members are asked (GET /api/connections); an error that names a field (a bad
// address) is shown at that field.

import { useState } from "preact/hooks";
import type { ConnectionLocation, ConnectionQuery } from "../../../src/api/types.js";
import { TandemError } from "../../../src/stdx/errors.js";
import { StateBadge, TableWrap } from "../components/bits.js";
import { messageOf, ms } from "../format.js";
import type { LiveState } from "../live.js";
import type { Session } from "../session.js";

const PROTOCOLS: Record<number, string> = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6" };
/** Rows drawn at once: a busy address has thousands of connections; the counts cover them all. */
const ROWS_SHOWN_MAX = 100;

interface Form {
  group: string;
  protocol: string;
  src: string;
  srcPort: string;
  dst: string;
  dstPort: string;
}

const EMPTY: Form = { group: "", protocol: "", src: "", srcPort: "", dst: "", dstPort: "" };

export function ConnectionsPage(props: { session: Session; state: LiveState }) {
  const { session, state } = props;
  const [form, setForm] = useState<Form>(EMPTY);
  const [results, setResults] = useState<ConnectionLocation[] | null>(null);
  const [error, setError] = useState<{ message: string; field: string | null } | null>(null);
  const [busy, setBusy] = useState(false);
  /** Searches answered so far (data-searches: scripts wait for the next answer). */
  const [answered, setAnswered] = useState(0);
  const groups = state.snapshot?.groups.map((g) => g.name) ?? [];

  const search = async (e: Event) => {
    e.preventDefault();
    const query: ConnectionQuery = {};
    if (form.group !== "") query.group = form.group;
    if (form.protocol !== "") query.protocol = form.protocol as "tcp";
    if (form.src.trim() !== "") query.src = form.src.trim();
    if (form.dst.trim() !== "") query.dst = form.dst.trim();
    for (const [key, value] of [
      ["srcPort", form.srcPort],
      ["dstPort", form.dstPort],
    ] as const) {
      if (value.trim() === "") continue;
      const port = Number(value);
      if (!Number.isInteger(port) || port < 0 || port > 65535) {
        setError({ message: `${key === "srcPort" ? "source" : "destination"} port must be 0-65535`, field: key });
        return;
      }
      query[key] = port;
    }
    setBusy(true);
    try {
      setResults(await session.client.findConnections(query));
      setError(null);
    } catch (err) {
      const details = err instanceof TandemError ? (err.details ?? {}) : {};
      setError({ message: messageOf(err), field: typeof details.field === "string" ? details.field : null });
    } finally {
      setBusy(false);
      setAnswered((n) => n + 1);
    }
  };

  const input = (name: keyof Form, label: string, placeholder: string) => (
    <label>
      {label}
      <input
        name={name}
        value={form[name]}
        placeholder={placeholder}
        inputMode={name.endsWith("Port") ? "numeric" : undefined}
        aria-invalid={error?.field === name}
        aria-describedby={error?.field === name ? "conn-error" : undefined}
        onInput={(e) => setForm({ ...form, [name]: e.currentTarget.value })}
      />
      {error?.field === name && (
        <span id="conn-error" class="field-error">
          {error.message}
        </span>
      )}
    </label>
  );

  return (
    <>
      <h1>Connections</h1>
      <form class="grid-form" onSubmit={(e) => void search(e)} aria-label="Find connections" data-searches={answered}>
        <label>
          Group
          <select name="group" value={form.group} onChange={(e) => setForm({ ...form, group: e.currentTarget.value })}>
            <option value="">any</option>
            {groups.map((g) => (
              <option key={g} value={g}>
                {g}
              </option>
            ))}
          </select>
        </label>
        <label>
          Protocol
          <select name="protocol" value={form.protocol} onChange={(e) => setForm({ ...form, protocol: e.currentTarget.value })}>
            <option value="">any</option>
            <option value="tcp">tcp</option>
            <option value="udp">udp</option>
            <option value="icmp">icmp</option>
            <option value="icmpv6">icmpv6</option>
          </select>
        </label>
        {input("src", "Source address", "198.19.1.10")}
        {input("srcPort", "Source port", "any")}
        {input("dst", "Destination address", "198.19.2.10")}
        {input("dstPort", "Destination port", "any")}
        <div class="buttons">
          <button type="submit" class="primary" disabled={busy}>
            {busy ? "Asking the members…" : "Search"}
          </button>
        </div>
      </form>
      {error !== null && error.field === null && (
        <p role="alert" class="error-box">
          {error.message}
        </p>
      )}
      {results !== null && (
        <section aria-labelledby="results-h">
          <h2 id="results-h">
            {results.length} connection{results.length === 1 ? "" : "s"}
            {results.some((r) => !r.complete) ? " (some members did not answer)" : ""}
          </h2>
          {results.length > 0 && <p class="muted">{countsOf(results)}</p>}
          {results.length > ROWS_SHOWN_MAX && <p class="muted">Showing the first {ROWS_SHOWN_MAX}; narrow the search (a port, a source) to see others.</p>}
          {results.length > 0 && (
            <TableWrap label="Connections found">
              <table class="connections" data-count={results.length}>
                <thead>
                  <tr>
                    <th scope="col">Protocol</th>
                    <th scope="col">Source</th>
                    <th scope="col">Destination</th>
                    <th scope="col">State</th>
                    <th scope="col">Owner</th>
                    <th scope="col">Backup</th>
                    <th scope="col" class="n">Bucket</th>
                    <th scope="col" class="n">Expires in</th>
                    <th scope="col">Held by</th>
                  </tr>
                </thead>
                <tbody>
                  {results.slice(0, ROWS_SHOWN_MAX).map((c) => (
                    <tr key={`${c.protocol}|${c.src}|${c.srcPort}|${c.dst}|${c.dstPort}|${c.group}`}>
                      <td>{PROTOCOLS[c.protocol] ?? c.protocol}</td>
                      <td>
                        {c.src}:{c.srcPort}
                      </td>
                      <td>
                        {c.dst}:{c.dstPort}
                      </td>
                      <td>{c.state ?? <span class="muted">none (where it would live)</span>}</td>
                      <td>
                        {c.owner} {c.ownerState !== null && <StateBadge state={c.ownerState} />}
                      </td>
                      <td>
                        {c.backup ?? "–"} {c.backupState !== null && <StateBadge state={c.backupState} />}
                      </td>
                      <td class="n">{c.bucket}</td>
                      <td class="n">{ms(c.expiresInMs)}</td>
                      <td>{c.heldBy.map((h) => `${h.member} (${h.role})`).join(", ")}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </TableWrap>
          )}
        </section>
      )}
    </>
  );
}

/** "812 ESTABLISHED · 90 TIME_WAIT; owners local-3 500 · local-4 402". */
function countsOf(results: readonly ConnectionLocation[]): string {
  const by = (key: (c: ConnectionLocation) => string) => {
    const counts = new Map<string, number>();
    for (const c of results) counts.set(key(c), (counts.get(key(c)) ?? 0) + 1);
    return [...counts.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ${n}`)
      .join(" · ");
  };
  return `By state: ${by((c) => c.state ?? "none")}. By owner: ${by((c) => c.owner)}.`;
}
