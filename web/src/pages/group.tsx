// A security group: its members with state and load, live charts per member, the bucket map,
// the staged changes beside the applied table (apply / discard), the running transition's
// progress, a sync verification with its per-bucket result, and the group's event timeline.
// Action buttons exist only for operators and admins; the API refuses monitors anyway.

import { useEffect, useMemo, useState } from "preact/hooks";
import type { BucketMap, ChangesView, StreamMember, VerifyView } from "../../../src/api/types.js";
import { AutoscalePanel } from "../components/autoscale-panel.js";
import { BucketMapView } from "../components/bucket-map.js";
import { UpgradePanel } from "../components/upgrade-panel.js";
import { EventList, StateBadge, TableWrap } from "../components/bits.js";
import { LineChart } from "../components/chart.js";
import { confirmAction, notify } from "../components/dialogs.js";
import { coloursOf, healthOf, hrefOf, messageOf, ms, num } from "../format.js";
import type { LiveState } from "../live.js";
import type { Session } from "../session.js";
import { AssignControl } from "./overview.js";

const VERIFY_POLL_MS = 400;

export function GroupPage(props: { session: Session; state: LiveState; group: string }) {
  const { session, state, group } = props;
  const snap = state.snapshot;
  const g = snap?.groups.find((x) => x.name === group) ?? null;
  const members = useMemo(() => (snap?.members ?? []).filter((m) => m.group === group).sort((a, b) => (a.appliance < b.appliance ? -1 : 1)), [snap, group]);
  const names = members.map((m) => m.appliance).join(",");
  const colours = useMemo(() => coloursOf(names === "" ? [] : names.split(",")), [names]);

  // The bucket map and the changes are fetched when what they show changed (epoch, transition,
  // pending changes), not on every snapshot.
  const transitionKey = g?.transition === null || g === null ? "none" : `${g.transition.seq}:${Math.floor(g.transition.progress * 10)}`;
  const [map, setMap] = useState<BucketMap | null>(null);
  const mapKey = g === null ? "" : `${g.epoch}|${transitionKey}`;
  useEffect(() => {
    if (mapKey === "") return;
    let stale = false;
    session.client.buckets(group).then(
      (m) => !stale && setMap(m),
      (error: unknown) => notify("error", `Bucket map of ${group}: ${messageOf(error)}`),
    );
    return () => {
      stale = true;
    };
  }, [session, group, mapKey]);

  const [changes, setChanges] = useState<ChangesView | null>(null);
  const [changesNonce, setChangesNonce] = useState(0);
  const changesKey = g === null ? "" : `${g.epoch}|${g.pendingChanges}|${transitionKey}|${changesNonce}`;
  useEffect(() => {
    if (changesKey === "") return;
    let stale = false;
    session.client.changes(group).then(
      (c) => !stale && setChanges(c),
      (error: unknown) => notify("error", `Changes of ${group}: ${messageOf(error)}`),
    );
    return () => {
      stale = true;
    };
  }, [session, group, changesKey]);
  const refreshChanges = () => setChangesNonce((n) => n + 1);

  const [verify, setVerify] = useState<VerifyView | null>(null);
  // A round's differing buckets are outlined only on the table it checked.
  const mapEpoch = map?.epoch ?? null;
  const marked = useMemo(() => new Set(verify !== null && verify.epoch === mapEpoch ? verify.mismatches.flatMap((m) => m.buckets) : []), [verify, mapEpoch]);

  if (snap === null) return <p class="muted">Waiting for the first update from the orchestrator…</p>;
  if (g === null) {
    return (
      <>
        <h1>Security group {group}</h1>
        <p role="alert" class="error-box">
          There is no security group named {group}. <a href={hrefOf({ page: "overview" })}>Back to the overview</a>.
        </p>
      </>
    );
  }
  const health = healthOf(g, members);
  const pendingOf = new Map((changes?.changes ?? []).map((c) => [c.appliance, c.kind]));

  const stage = async (kind: "drain" | "unassign", appliance: string) => {
    const what = kind === "drain" ? "Drain" : "Remove";
    const ok = await confirmAction({
      title: `${what} ${appliance}?`,
      body:
        kind === "drain"
          ? `This stages a drain: once applied, ${appliance}'s buckets move to the other members make-before-break, and it stays in the group as DETACHED.`
          : `This stages the removal: once applied, ${appliance} leaves the group (its buckets move first) and returns to the pool.`,
      confirmLabel: `Stage ${kind === "drain" ? "drain" : "removal"}`,
      danger: true,
    });
    if (!ok) return;
    try {
      const r = kind === "drain" ? await session.client.drain(group, appliance) : await session.client.unassign(group, appliance);
      notify("info", `Staged: ${kind} ${appliance} (${r.pending} pending). Review and apply below.`);
      refreshChanges();
    } catch (error) {
      notify("error", `${what} ${appliance}: ${messageOf(error)}`);
    }
  };

  return (
    <>
      <div class="page-head">
        <h1>Security group {group}</h1>
        <span class={`badge ${health.level}`} data-testid="group-health">
          {health.text}
        </span>
        <a href={hrefOf({ page: "policy", group })}>Policy ({g.rules} rules, revision {g.policyRevision})</a>
      </div>
      <p class="facts">
        Epoch <strong data-testid="group-epoch">{g.epoch}</strong> · {num(g.bucketCount)} buckets · {g.up} of {g.members} members up
      </p>
      <TransitionBar transition={g.transition} />

      <section aria-labelledby="members-h">
        <h2 id="members-h">Members</h2>
        <MembersTable members={members} epoch={g.epoch} colours={colours} pendingOf={pendingOf} canAct={session.canAct} onStage={(k, a) => void stage(k, a)} />
        {session.canAct && snap.pool.length > 0 && (
          <div class="assign-from-pool">
            <h3>Add a member from the pool</h3>
            <ul class="plain">
              {snap.pool.map((a) => (
                <li key={a.id}>
                  {a.id} ({a.model}, {a.cores} cores, {a.alive ? "alive" : "silent"}){" "}
                  <AssignControl session={session} appliance={a.id} groups={[group]} />
                </li>
              ))}
            </ul>
          </div>
        )}
      </section>

      <ChangesPanel session={session} group={group} changes={changes} canAct={session.canAct} onChanged={refreshChanges} />

      <AutoscalePanel session={session} group={group} atMs={snap.atMs} />

      <UpgradePanel session={session} group={group} atMs={snap.atMs} />

      <section aria-labelledby="load-h">
        <h2 id="load-h">Load</h2>
        <LoadCharts state={state} members={members} colours={colours} />
      </section>

      <section aria-labelledby="buckets-h">
        <h2 id="buckets-h">Bucket map</h2>
        <BucketMapView map={map} colours={colours} marked={marked} />
      </section>

      <VerifyPanel session={session} group={group} canAct={session.canAct} verify={verify} mapEpoch={mapEpoch} onVerify={setVerify} />

      <section aria-labelledby="timeline-h">
        <h2 id="timeline-h">Event timeline</h2>
        <EventList events={state.events.filter((e) => e.group === group)} max={40} emptyText="No events of this group in the recent ones." />
      </section>
    </>
  );
}

function TransitionBar(props: { transition: { kind: string; seq: number; progress: number } | null }) {
  const t = props.transition;
  if (t === null) return <p class="muted" data-testid="transition" data-running="false">No transition running.</p>;
  const pct = Math.round(t.progress * 100);
  return (
    <div class="transition" data-testid="transition" data-running="true">
      <label for="transition-progress">
        Transition #{t.seq}: {t.kind}, {pct}%
      </label>
      <progress id="transition-progress" max={1} value={t.progress} />
    </div>
  );
}

function MembersTable(props: {
  members: StreamMember[];
  /** The group's epoch, to flag members still running an older one. */
  epoch: number;
  colours: Map<string, string>;
  pendingOf: Map<string, string>;
  canAct: boolean;
  onStage: (kind: "drain" | "unassign", appliance: string) => void;
}) {
  const { members, colours, pendingOf, canAct, epoch } = props;
  if (members.length === 0) return <p class="muted">No members.</p>;
  return (
    <TableWrap label="Members">
      <table class="members">
        <thead>
          <tr>
            <th scope="col">Member</th>
            <th scope="col">State</th>
            <th scope="col" class="n">CPU</th>
            <th scope="col" class="n">Packets/s</th>
            <th scope="col" class="n">Connections</th>
            <th scope="col" class="n">Sync lag</th>
            <th scope="col" class="n">Runs epoch</th>
            <th scope="col" class="n">Corrections</th>
            <th scope="col" class="n">Owns / backs up</th>
            <th scope="col" class="n">Weight</th>
            {canAct && <th scope="col">Actions</th>}
          </tr>
        </thead>
        <tbody>
          {members.map((m) => {
            const pending = pendingOf.get(m.appliance);
            return (
              <tr key={m.appliance} data-appliance={m.appliance} data-state={m.state}>
                <th scope="row">
                  <span class="swatch" style={{ background: colours.get(m.appliance) }} aria-hidden="true" />
                  {m.appliance}
                  {pending !== undefined && <span class="badge busy pending-tag">pending {pending}</span>}
                </th>
                <td>
                  <StateBadge state={m.state} />
                  {!m.alive && m.state !== "DOWN" && m.state !== "DETACHED" && <span class="badge bad">silent</span>}
                </td>
                <td class="n">{m.cpuPct === null ? "–" : `${num(m.cpuPct)} %`}</td>
                <td class="n">{num(m.packetsPerSec)}</td>
                <td class="n">{num(m.connections)}</td>
                <td class="n">{ms(m.syncLagMs)}</td>
                <td class="n">{m.epoch === null ? "–" : m.epoch < epoch && m.alive ? `${m.epoch} (behind)` : m.epoch}</td>
                <td class="n">{num(m.corrections)}</td>
                <td class="n">
                  {num(m.owned)} / {num(m.backups)}
                </td>
                <td class="n">{num(m.weight, 0)}</td>
                {canAct && (
                  <td class="actions">
                    {m.state === "UP" && m.inTable && pending === undefined && (
                      <button type="button" onClick={() => props.onStage("drain", m.appliance)} aria-label={`Drain ${m.appliance}`}>
                        Drain…
                      </button>
                    )}
                    {pending === undefined && (
                      <button type="button" class="danger-outline" onClick={() => props.onStage("unassign", m.appliance)} aria-label={`Remove ${m.appliance}`}>
                        Remove…
                      </button>
                    )}
                  </td>
                )}
              </tr>
            );
          })}
        </tbody>
      </table>
    </TableWrap>
  );
}

function ChangesPanel(props: { session: Session; group: string; changes: ChangesView | null; canAct: boolean; onChanged: () => void }) {
  const { session, group, changes, canAct } = props;
  const [busy, setBusy] = useState(false);
  if (changes === null) return null;
  const run = async (what: string, action: () => Promise<string>) => {
    setBusy(true);
    try {
      notify("info", await action());
    } catch (error) {
      notify("error", `${what}: ${messageOf(error)}`);
    } finally {
      setBusy(false);
      props.onChanged();
    }
  };
  const apply = async () => {
    const p = changes.pending;
    const ok = await confirmAction({
      title: `Apply ${changes.changes.length} change${changes.changes.length === 1 ? "" : "s"} to ${group}?`,
      body:
        p === null
          ? "The changes are applied as one epoch change."
          : `About ${num(p.movedBuckets)} buckets change owner${p.transition ? "; they are filled make-before-break first (no connection is lost)" : ""}. Progress shows above the members.`,
      confirmLabel: "Apply",
    });
    if (!ok) return;
    await run("Apply", async () => {
      const r = await session.client.applyChanges(group);
      return `Applied ${r.applied} change${r.applied === 1 ? "" : "s"}: epoch ${r.epoch}${r.transition !== null ? `, ${r.transition.kind} transition running` : ""}.`;
    });
  };
  const discard = async (appliance?: string) => {
    const ok = await confirmAction({
      title: appliance === undefined ? `Discard every pending change of ${group}?` : `Discard the pending change of ${appliance}?`,
      body: "Nothing in the running cluster changes; the staged edit is forgotten.",
      confirmLabel: "Discard",
      danger: true,
    });
    if (!ok) return;
    await run("Discard", async () => {
      const r = await session.client.discardChanges(group, appliance);
      return `Discarded ${r.discarded} pending change${r.discarded === 1 ? "" : "s"}.`;
    });
  };

  const applied = new Map(changes.applied.members.map((m) => [m.appliance, m]));
  const after = new Map((changes.pending?.members ?? []).map((m) => [m.appliance, m]));
  const kindOf = new Map(changes.changes.map((c) => [c.appliance, c.kind]));
  const everyone = [...new Set([...applied.keys(), ...after.keys(), ...kindOf.keys()])].sort();
  return (
    <section aria-labelledby="changes-h" class="changes" data-pending={changes.changes.length}>
      <h2 id="changes-h">Staged changes</h2>
      {changes.changes.length === 0 ? (
        <p class="muted">{canAct ? "No pending changes. Drain, remove or assign a member to stage one; nothing moves until you apply." : "No pending changes."}</p>
      ) : (
        <>
          <ul class="plain pending-list">
            {changes.changes.map((c) => (
              <li key={c.appliance}>
                <strong>{c.kind}</strong> {c.appliance}
                {c.weight !== null ? ` (weight ${c.weight})` : ""} <span class="muted">staged by {c.stagedBy}</span>{" "}
                {canAct && (
                  <button type="button" class="link" disabled={busy} onClick={() => void discard(c.appliance)} aria-label={`Discard the change of ${c.appliance}`}>
                    discard
                  </button>
                )}
              </li>
            ))}
          </ul>
          <TableWrap label="Applied and pending tables">
            <table class="beside">
              <caption>
                Applied (epoch {changes.applied.epoch}) beside pending
                {changes.pending !== null ? `: ${num(changes.pending.movedBuckets)} buckets move${changes.pending.transition ? ", make-before-break" : ""}` : ""}
              </caption>
              <thead>
                <tr>
                  <th scope="col">Member</th>
                  <th scope="col">Applied: owns / backs up</th>
                  <th scope="col">After apply: owns / backs up</th>
                  <th scope="col">Change</th>
                </tr>
              </thead>
              <tbody>
                {everyone.map((a) => {
                  const x = applied.get(a);
                  const y = after.get(a);
                  return (
                    <tr key={a}>
                      <th scope="row">{a}</th>
                      <td>{x === undefined ? "–" : `${num(x.owned)} / ${num(x.backups)}`}</td>
                      <td>{y === undefined ? (changes.pending === null ? "?" : "leaves the table") : `${num(y.owned)} / ${num(y.backups)}`}</td>
                      <td>{kindOf.get(a) ?? y?.change ?? x?.change ?? ""}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </TableWrap>
          {changes.problem !== null && (
            <p role="alert" class="error-box">
              Cannot apply now: {changes.problem.message}
            </p>
          )}
          {canAct && (
            <div class="buttons">
              <button type="button" class="primary" disabled={busy} onClick={() => void apply()}>
                Apply changes…
              </button>
              <button type="button" class="danger-outline" disabled={busy} onClick={() => void discard()}>
                Discard all…
              </button>
            </div>
          )}
        </>
      )}
    </section>
  );
}

function LoadCharts(props: { state: LiveState; members: StreamMember[]; colours: Map<string, string> }) {
  const { state, members, colours } = props;
  const history = state.history;
  const series = members.map((m) => ({ label: m.appliance, colour: colours.get(m.appliance) ?? "#777" }));
  const xs = useMemo(() => history.map((s) => s.atMs / 1000), [history]);
  const names = members.map((m) => m.appliance);
  const key = names.join(",");
  const pps = useMemo(() => names.map((a) => history.map((s) => s.load[a]?.[0] ?? null)), [history, key]);
  const conns = useMemo(() => names.map((a) => history.map((s) => s.load[a]?.[1] ?? null)), [history, key]);
  if (history.length < 2) return <p class="muted">Collecting samples…</p>;
  return (
    <div class="charts">
      <LineChart title="Packets per second, per member" unit="pkt/s" series={series} xs={xs} ys={pps} />
      <LineChart title="Connections, per member" unit="conns" series={series} xs={xs} ys={conns} />
    </div>
  );
}

function VerifyPanel(props: { session: Session; group: string; canAct: boolean; verify: VerifyView | null; mapEpoch: number | null; onVerify: (v: VerifyView | null) => void }) {
  const { session, group, canAct, verify, mapEpoch } = props;
  const [error, setError] = useState<string | null>(null);
  const [polling, setPolling] = useState<number | null>(null);
  useEffect(() => {
    if (polling === null) return;
    let stopped = false;
    const poll = async () => {
      while (!stopped) {
        try {
          const v = await session.client.verifyStatus(group, polling);
          if (stopped) return;
          props.onVerify(v);
          if (v.done) {
            setPolling(null);
            return;
          }
        } catch (e) {
          setError(messageOf(e));
          setPolling(null);
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, VERIFY_POLL_MS));
      }
    };
    void poll();
    return () => {
      stopped = true;
    };
  }, [polling, group, session]);

  const start = async () => {
    const ok = await confirmAction({
      title: `Verify ${group}?`,
      body: "Every serving member compares per-bucket digests of its connections with the bucket's backup. Traffic is not interrupted.",
      confirmLabel: "Run verification",
    });
    if (!ok) return;
    try {
      setError(null);
      const v = await session.client.startVerify(group);
      props.onVerify(v);
      setPolling(v.id);
    } catch (e) {
      setError(messageOf(e));
    }
  };
  const differing = verify?.mismatches.reduce((n, m) => n + m.count, 0) ?? 0;
  return (
    <section aria-labelledby="verify-h" class="verify">
      <h2 id="verify-h">Sync verification</h2>
      {canAct && (
        <button type="button" onClick={() => void start()} disabled={polling !== null}>
          Run verification…
        </button>
      )}
      {!canAct && verify === null && <p class="muted">Operators can run a verification; its result shows here.</p>}
      {error !== null && (
        <p role="alert" class="error-box">
          {error}
        </p>
      )}
      {verify !== null && (
        <div class="verify-result" data-testid="verify-result" data-done={String(verify.done)} data-differing={differing}>
          <label for="verify-progress">
            Round {verify.id} (epoch {verify.epoch}): {verify.reported.length} of {verify.expected.length} members reported
          </label>
          <progress id="verify-progress" max={1} value={verify.progress} />
          {verify.done && (
            <p>
              {verify.timedOut ? `Timed out waiting for ${verify.missing.join(", ")}. ` : ""}
              Checked {num(verify.bucketsChecked)} buckets:{" "}
              {differing === 0 ? <strong class="ok-text">owner and backup agree on every bucket.</strong> : <strong class="bad-text">
                  {num(differing)} differ{verify.epoch === mapEpoch ? " (outlined in red on the bucket map)" : ""}.
                </strong>}
            </p>
          )}
          {verify.mismatches.length > 0 && (
            <ul class="plain">
              {verify.mismatches.map((m) => (
                <li key={m.member}>
                  {m.member}: {m.count} bucket{m.count === 1 ? "" : "s"} differ — {m.buckets.slice(0, 40).join(", ")}
                  {m.buckets.length > 40 ? " …" : ""}
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
    </section>
  );
}
