// Overview: every security group with its members, load and health; the pool of spare
// appliances (assign one to a group, or register a new one); the recent events.

import { useState } from "preact/hooks";
import type { ApplianceInput, DistributorLoadView } from "../../../src/api/types.js";
import { EventList, TableWrap } from "../components/bits.js";
import { confirmAction, notify } from "../components/dialogs.js";
import { healthOf, hrefOf, messageOf, num, sum, time } from "../format.js";
import type { LiveState } from "../live.js";
import type { Session } from "../session.js";

export function OverviewPage(props: { session: Session; state: LiveState }) {
  const { session, state } = props;
  const snap = state.snapshot;
  if (snap === null) return <p class="muted">Waiting for the first update from the orchestrator…</p>;
  return (
    <>
      <h1>Overview</h1>
      {snap.distributor?.limited === true && <DistributorLimited load={snap.distributor} />}
      {snap.distributor !== undefined && snap.distributor !== null && snap.distributor.utilization !== null && (
        <p class="muted" data-testid="distributor-load">
          Distributor: {num(snap.distributor.utilization * 100)}% busy, {num(snap.distributor.framesPerSec ?? 0)} frames/s.
        </p>
      )}
      <section aria-labelledby="groups-h">
        <h2 id="groups-h">Security groups</h2>
        {snap.groups.length === 0 ? (
          <p class="muted">No security groups yet (tandem sg create NAME).</p>
        ) : (
          <TableWrap label="Security groups">
            <table class="groups">
              <thead>
                <tr>
                  <th scope="col">Group</th>
                  <th scope="col">Members up</th>
                  <th scope="col" class="n">Packets/s</th>
                  <th scope="col" class="n">Connections</th>
                  <th scope="col" class="n">Epoch</th>
                  <th scope="col">Health</th>
                  <th scope="col" class="n">Pending changes</th>
                </tr>
              </thead>
              <tbody>
                {snap.groups.map((g) => {
                  const members = snap.members.filter((m) => m.group === g.name);
                  const health = healthOf(g, members);
                  return (
                    <tr key={g.name} data-group={g.name}>
                      <th scope="row">
                        <a href={hrefOf({ page: "group", group: g.name })}>{g.name}</a>
                      </th>
                      <td>
                        {g.up} of {g.members}
                      </td>
                      <td class="n">{num(sum(members.map((m) => m.packetsPerSec)))}</td>
                      <td class="n">{num(sum(members.map((m) => m.connections)))}</td>
                      <td class="n">{g.epoch}</td>
                      <td>
                        <span class={`badge ${health.level}`}>{health.text}</span>
                      </td>
                      <td class="n">{g.pendingChanges}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </TableWrap>
        )}
      </section>

      <section aria-labelledby="pool-h">
        <h2 id="pool-h">Pool of spare appliances</h2>
        {snap.pool.length === 0 ? (
          <p class="muted">The pool is empty: every appliance is a member of a group.</p>
        ) : (
          <TableWrap label="Pool">
            <table class="pool">
              <thead>
                <tr>
                  <th scope="col">Appliance</th>
                  <th scope="col">Model</th>
                  <th scope="col" class="n">Cores</th>
                  <th scope="col" class="n">Memory</th>
                  <th scope="col">Version</th>
                  <th scope="col">Heartbeat</th>
                  {session.canAct && <th scope="col">Assign</th>}
                </tr>
              </thead>
              <tbody>
                {snap.pool.map((a) => (
                  <tr key={a.id} data-appliance={a.id}>
                    <th scope="row">{a.id}</th>
                    <td>{a.model}</td>
                    <td class="n">{a.cores}</td>
                    <td class="n">{num(a.memoryMb / 1024, 1)} GB</td>
                    <td>{a.version}</td>
                    <td>{a.alive ? <span class="badge ok">alive</span> : <span class="badge muted">silent</span>}</td>
                    {session.canAct && (
                      <td>
                        <AssignControl session={session} appliance={a.id} groups={snap.groups.map((g) => g.name)} />
                      </td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          </TableWrap>
        )}
        {session.canAct && <AddAppliance session={session} />}
      </section>

      <section aria-labelledby="events-h">
        <h2 id="events-h">Recent events</h2>
        <EventList events={state.events} max={15} showGroup />
      </section>
    </>
  );
}

/** Stages the assignment of a pool appliance to a group (applied from the group's page). */
export function AssignControl(props: { session: Session; appliance: string; groups: string[] }) {
  const [group, setGroup] = useState(props.groups[0] ?? "");
  const id = `assign-${props.appliance}`;
  const assign = async () => {
    const ok = await confirmAction({
      title: `Assign ${props.appliance} to ${group}?`,
      body: `This stages the assignment; the group's page shows it beside the applied table until you apply it (a make-before-break join).`,
      confirmLabel: "Stage assignment",
    });
    if (!ok) return;
    try {
      const r = await props.session.client.assign(group, props.appliance);
      notify("info", `Staged: assign ${props.appliance} to ${group} (${r.pending} pending). Apply it on the group's page.`);
    } catch (error) {
      notify("error", `Assign ${props.appliance}: ${messageOf(error)}`);
    }
  };
  if (props.groups.length === 0) return <span class="muted">no group</span>;
  return (
    <span class="inline-form">
      <label for={id} class="visually-hidden">
        Group for {props.appliance}
      </label>
      <select id={id} value={group} onChange={(e) => setGroup(e.currentTarget.value)}>
        {props.groups.map((g) => (
          <option key={g} value={g}>
            {g}
          </option>
        ))}
      </select>
      <button type="button" onClick={() => void assign()} aria-label={`Assign ${props.appliance}`}>
        Assign…
      </button>
    </span>
  );
}

const NEW_APPLIANCE: ApplianceInput = { id: "", model: "local", cores: 2, memoryMb: 4096, version: "0.1.0", address: "127.0.0.1" };

function AddAppliance(props: { session: Session }) {
  const [input, setInput] = useState<ApplianceInput>(NEW_APPLIANCE);
  const [error, setError] = useState<string | null>(null);
  const field = (name: keyof ApplianceInput, label: string, type: "text" | "number") => (
    <label>
      {label}
      <input
        name={name}
        type={type}
        required
        min={type === "number" ? 1 : undefined}
        value={String(input[name])}
        onInput={(e) => setInput({ ...input, [name]: type === "number" ? Number(e.currentTarget.value) : e.currentTarget.value })}
      />
    </label>
  );
  const submit = async (e: Event) => {
    e.preventDefault();
    const ok = await confirmAction({ title: `Register appliance ${input.id}?`, body: `It joins the pool of spares (model ${input.model}, ${input.cores} cores, version ${input.version}).`, confirmLabel: "Register" });
    if (!ok) return;
    try {
      await props.session.client.addAppliance(input);
      setError(null);
      notify("info", `Registered ${input.id}: it is in the pool.`);
      setInput(NEW_APPLIANCE);
    } catch (err) {
      setError(messageOf(err));
    }
  };
  return (
    <details class="add-appliance">
      <summary>Register an appliance</summary>
      <form onSubmit={(e) => void submit(e)} class="grid-form">
        {field("id", "Id", "text")}
        {field("model", "Model", "text")}
        {field("cores", "Cores", "number")}
        {field("memoryMb", "Memory (MB)", "number")}
        {field("version", "Software version", "text")}
        {field("address", "Address", "text")}
        <div class="buttons">
          <button type="submit" class="primary">
            Register…
          </button>
        </div>
        {error !== null && (
          <p role="alert" class="error-box">
            {error}
          </p>
        )}
      </form>
    </details>
  );
}

/** Shown while the distributor, not the members, limits throughput (the orchestrator's distributor.bottleneck event). */
function DistributorLimited(props: { load: DistributorLoadView }) {
  const { load } = props;
  return (
    <p class="banner" role="alert" data-testid="distributor-limited">
      <strong>The distributor limits throughput:</strong> its thread is {num((load.utilization ?? 0) * 100)}% busy at {num(load.framesPerSec)} frames/s while the
      members have CPU to spare{load.since !== null && <> (since {time(load.since)})</>}. Adding members will not add throughput; <code>tandem sizing</code> says what this
      orchestrator can forward.
    </p>
  );
}
