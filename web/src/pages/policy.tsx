// A group's policy: the rule table with live hit counters, and an editor of the policy as
// YAML. Applying sends the text as written (PUT policyText), so the API's validation names the
// rule, the field and the line; the error is shown at that rule and field, and the line is
// marked in the editor's gutter ("Go to line" selects it).

import { useEffect, useRef, useState } from "preact/hooks";
import { stringify } from "yaml";
import type { PolicySpec } from "../../../src/api/types.js";
import { TandemError } from "../../../src/stdx/errors.js";
import { TableWrap } from "../components/bits.js";
import { confirmAction, notify } from "../components/dialogs.js";
import { hrefOf, messageOf, num } from "../format.js";
import type { LiveState } from "../live.js";
import type { Session } from "../session.js";

interface PolicyError {
  code: string;
  message: string;
  rule: string | number | null;
  ruleIndex: number | null;
  field: string | null;
  line: number | null;
}

function policyErrorOf(error: unknown): PolicyError {
  const details = error instanceof TandemError ? (error.details ?? {}) : {};
  const rule = details.rule;
  return {
    code: error instanceof TandemError ? error.code : "TANDEM_INTERNAL",
    message: messageOf(error),
    rule: typeof rule === "string" || typeof rule === "number" ? rule : null,
    ruleIndex: typeof details.ruleIndex === "number" ? details.ruleIndex : null,
    field: typeof details.field === "string" && details.field !== "" ? details.field : null,
    line: typeof details.line === "number" ? details.line : null,
  };
}

function list(value: unknown): string {
  if (value === undefined || value === null) return "any";
  return Array.isArray(value) ? value.join(", ") : String(value);
}

export function PolicyPage(props: { session: Session; state: LiveState; group: string }) {
  const { session, state, group } = props;
  const g = state.snapshot?.groups.find((x) => x.name === group) ?? null;
  const revision = g?.policyRevision ?? null;
  const [applied, setApplied] = useState<{ policyRevision: number; policy: PolicySpec } | null>(null);
  const [text, setText] = useState("");
  const [dirty, setDirty] = useState(false);
  const [error, setError] = useState<PolicyError | null>(null);
  const [busy, setBusy] = useState(false);
  const editor = useRef<HTMLTextAreaElement>(null);
  const gutter = useRef<HTMLOListElement>(null);

  useEffect(() => {
    let stale = false;
    session.client.getPolicy(group).then(
      (p) => {
        if (stale) return;
        setApplied({ policyRevision: p.policyRevision, policy: p.policy });
        if (!dirty) setText(stringify(p.policy, { lineWidth: 0 }));
      },
      (e: unknown) => notify("error", `Policy of ${group}: ${messageOf(e)}`),
    );
    return () => {
      stale = true;
    };
    // The draft survives a revision made elsewhere; the table shows the new one.
  }, [session, group, revision]);

  const hits = state.snapshot?.ruleHits[group] ?? {};
  const lines = Math.max(1, text.split("\n").length);

  const apply = async () => {
    const ok = await confirmAction({
      title: `Apply this policy to ${group}?`,
      body: "Every member loads it at its next heartbeat; existing connections keep their verdicts, new ones meet the new rules.",
      confirmLabel: "Apply policy",
    });
    if (!ok) return;
    setBusy(true);
    try {
      const r = await session.client.applyPolicy(group, { policyText: text });
      setError(null);
      setDirty(false);
      notify("info", `Policy revision ${r.policyRevision} applied to ${group}: ${r.rules} rules.`);
    } catch (e) {
      setError(policyErrorOf(e));
    } finally {
      setBusy(false);
    }
  };
  const revert = () => {
    if (applied !== null) setText(stringify(applied.policy, { lineWidth: 0 }));
    setDirty(false);
    setError(null);
  };
  const goToLine = (line: number) => {
    const el = editor.current;
    if (el === null) return;
    const all = text.split("\n");
    const start = all.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
    el.focus();
    el.setSelectionRange(start, start + (all[line - 1]?.length ?? 0));
  };

  const ruleLabel = (e: PolicyError) => {
    if (e.ruleIndex === null) return null;
    const name = typeof e.rule === "string" ? `“${e.rule}” ` : "";
    return `Rule ${name}(#${e.ruleIndex + 1})`;
  };

  return (
    <>
      <div class="page-head">
        <h1>Policy of {group}</h1>
        <a href={hrefOf({ page: "group", group })}>Back to the group</a>
      </div>
      <section aria-labelledby="rules-h">
        <h2 id="rules-h">Rules {applied !== null && <span class="muted">(revision {applied.policyRevision}; the first matching rule decides, no match drops)</span>}</h2>
        {applied === null ? (
          <p class="muted">Loading…</p>
        ) : (
          <TableWrap label="Rules">
            <table class="rules">
              <thead>
                <tr>
                  <th scope="col" class="n">#</th>
                  <th scope="col">Rule</th>
                  <th scope="col">Protocol</th>
                  <th scope="col">Source</th>
                  <th scope="col">Destination</th>
                  <th scope="col">Ports</th>
                  <th scope="col">Action</th>
                  <th scope="col" class="n">Hits</th>
                  <th scope="col">Description</th>
                </tr>
              </thead>
              <tbody>
                {applied.policy.rules.map((r, i) => (
                  <tr key={r.name} data-rule={r.name} data-hits={hits[r.name] ?? 0}>
                    <td class="n">{i + 1}</td>
                    <th scope="row">{r.name}</th>
                    <td>{r.protocol ?? "any"}</td>
                    <td>{list(r.source)}</td>
                    <td>{list(r.destination)}</td>
                    <td>{r.ports === undefined ? "any" : list(r.ports)}</td>
                    <td>
                      <span class={`badge ${r.action === "accept" ? "ok" : "bad"}`}>{r.action}</span>
                      {r.log === true ? " log" : ""}
                    </td>
                    <td class="n">{num(hits[r.name] ?? 0)}</td>
                    <td>{r.description ?? ""}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableWrap>
        )}
      </section>

      <section aria-labelledby="edit-h">
        <h2 id="edit-h">{session.canAct ? "Edit" : "Text"}</h2>
        <label for="policy-text">Policy as YAML{session.canAct ? "" : " (read-only: your role is monitor)"}</label>
        <div class={`editor${error?.line !== null && error !== null ? " has-error" : ""}`}>
          <ol class="gutter" ref={gutter} aria-hidden="true">
            {Array.from({ length: lines }, (_, i) => (
              <li key={i} class={error?.line === i + 1 ? "error-line" : undefined} data-line={i + 1}>
                {i + 1}
              </li>
            ))}
          </ol>
          <textarea
            id="policy-text"
            ref={editor}
            value={text}
            rows={Math.min(30, Math.max(8, lines + 1))}
            spellcheck={false}
            readOnly={!session.canAct}
            aria-invalid={error !== null}
            aria-describedby={error !== null ? "policy-error" : undefined}
            onInput={(e) => {
              setText(e.currentTarget.value);
              setDirty(true);
            }}
            onScroll={(e) => {
              if (gutter.current !== null) gutter.current.scrollTop = e.currentTarget.scrollTop;
            }}
          />
        </div>
        {error !== null && (
          <div id="policy-error" role="alert" class="error-box policy-error" data-code={error.code} data-rule={error.rule ?? ""} data-rule-index={error.ruleIndex ?? ""} data-field={error.field ?? ""} data-line={error.line ?? ""}>
            {ruleLabel(error) !== null && (
              <p class="where">
                <strong>{ruleLabel(error)}</strong>
                {error.field !== null && (
                  <>
                    , field <code>{error.field}</code>
                  </>
                )}
                {error.line !== null && (
                  <>
                    , line {error.line}{" "}
                    <button type="button" class="link" onClick={() => goToLine(error.line!)}>
                      Go to line {error.line}
                    </button>
                  </>
                )}
              </p>
            )}
            <p class="message">{error.message}</p>
          </div>
        )}
        {session.canAct && (
          <div class="buttons">
            <button type="button" class="primary" disabled={busy || text.trim() === ""} onClick={() => void apply()}>
              Apply policy…
            </button>
            <button type="button" disabled={busy || !dirty} onClick={revert}>
              Revert to applied
            </button>
          </div>
        )}
      </section>
    </>
  );
}
