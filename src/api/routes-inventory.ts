// Routes of the cluster's configuration: appliances, security groups, members, interfaces,
// policy, staged changes (pending, apply, discard), transitions and rolling upgrades. Each is
// one line: a mutation goes through the daemon's command queue (answered once durable), a read
// goes to the control plane's view. Path parameters name the object; bodies carry the rest.

import type { FastifyInstance } from "fastify";
import type { OrchestratorDaemon } from "../runtime/orchestrator-daemon.js";
import { autoscaleViewOf } from "../runtime/autoscale-view.js";
import { route } from "./server.js";
import * as S from "./schemas.js";

export function registerInventoryRoutes(app: FastifyInstance, d: OrchestratorDaemon): void {
  const view = () => d.controlPlane.view();
  const now = () => d.nowMs();

  // ---- appliances
  const A = "appliances";
  route(app, { method: "GET", url: "/api/appliances", access: "monitor", tag: A, summary: "List appliances (pool and members) with state and liveness" }, () => view().appliances(now()));
  route(app, { method: "POST", url: "/api/appliances", access: "operator", tag: A, summary: "Register an appliance (it joins the pool)", body: S.APPLIANCE_ADD, status: 201 }, (c) => d.submit("appliance.add", c.body, c.actor));
  route(app, { method: "GET", url: "/api/appliances/:id", access: "monitor", tag: A, summary: "One appliance", params: S.PARAMS_ID }, (c) => view().appliance(c.params.id!, now()));
  route(app, { method: "PATCH", url: "/api/appliances/:id", access: "operator", tag: A, summary: "Change an appliance's model, cores, memory, version or address", params: S.PARAMS_ID, body: S.APPLIANCE_PATCH }, (c) =>
    d.submit("appliance.update", { ...c.body, id: c.params.id }, c.actor),
  );
  route(app, { method: "DELETE", url: "/api/appliances/:id", access: "admin", tag: A, summary: "Remove an appliance from the inventory (it must be in the pool)", params: S.PARAMS_ID }, (c) =>
    d.submit("appliance.remove", { id: c.params.id }, c.actor),
  );

  // ---- security groups
  const G = "security groups";
  route(app, { method: "GET", url: "/api/groups", access: "monitor", tag: G, summary: "List security groups" }, () => view().groups(now()));
  route(app, { method: "POST", url: "/api/groups", access: "operator", tag: G, summary: "Create a security group", body: S.SG_CREATE, status: 201 }, (c) => d.submit("sg.create", c.body, c.actor));
  route(app, { method: "GET", url: "/api/groups/:name", access: "monitor", tag: G, summary: "One security group in full (interfaces, routes, policy, autoscale, transition)", params: S.PARAMS_GROUP }, (c) =>
    view().group(c.params.name!, now()),
  );
  route(app, { method: "PATCH", url: "/api/groups/:name", access: "operator", tag: G, summary: "Change interfaces, routes, autoscale rules or allowMixedModels", params: S.PARAMS_GROUP, body: S.SG_PATCH }, (c) =>
    d.submit("sg.update", { ...c.body, name: c.params.name }, c.actor),
  );
  route(app, { method: "GET", url: "/api/groups/:name/autoscale", access: "monitor", tag: G, summary: "Auto-scaling: the rules, the last decision with its reason, the last action, the current load window", params: S.PARAMS_GROUP }, (c) =>
    autoscaleViewOf(d, c.params.name!),
  );
  route(app, { method: "DELETE", url: "/api/groups/:name", access: "admin", tag: G, summary: "Delete an empty security group", params: S.PARAMS_GROUP }, (c) => d.submit("sg.delete", { name: c.params.name }, c.actor));

  // ---- members (assign / unassign / drain / weight are STAGED: see changes)
  const M = "members";
  route(app, { method: "GET", url: "/api/groups/:name/members", access: "monitor", tag: M, summary: "Members of a group: state, weight, buckets, liveness, load", params: S.PARAMS_GROUP }, (c) =>
    view().members(c.params.name!, now()),
  );
  route(app, { method: "POST", url: "/api/groups/:name/members", access: "operator", tag: M, summary: "Stage the assignment of a pool appliance to the group", params: S.PARAMS_GROUP, body: S.ASSIGN }, (c) =>
    d.submit("sg.assign", { ...c.body, group: c.params.name }, c.actor),
  );
  route(app, { method: "DELETE", url: "/api/groups/:name/members/:appliance", access: "operator", tag: M, summary: "Stage a member's unassignment (back to the pool)", params: S.PARAMS_GROUP_APPLIANCE }, (c) =>
    d.submit("sg.unassign", { group: c.params.name, appliance: c.params.appliance }, c.actor),
  );
  route(app, { method: "POST", url: "/api/groups/:name/members/:appliance/drain", access: "operator", tag: M, summary: "Stage a member's drain (it stays assigned, DETACHED)", params: S.PARAMS_GROUP_APPLIANCE }, (c) =>
    d.submit("sg.drain", { group: c.params.name, appliance: c.params.appliance }, c.actor),
  );
  route(app, { method: "PUT", url: "/api/groups/:name/members/:appliance/weight", access: "operator", tag: M, summary: "Stage a member's new weight", params: S.PARAMS_GROUP_APPLIANCE, body: S.WEIGHT_PUT }, (c) =>
    d.submit("sg.weight", { group: c.params.name, appliance: c.params.appliance, weight: c.body.weight }, c.actor),
  );
  route(app, { method: "POST", url: "/api/groups/:name/weights/auto", access: "operator", tag: M, summary: "Return the weights to automatic: overrides staged back to cores (measured capacity when models differ)", params: S.PARAMS_GROUP }, (c) =>
    d.submit("sg.weights.auto", { group: c.params.name }, c.actor),
  );

  // ---- interfaces and policy
  const N = "interfaces and policy";
  route(app, { method: "GET", url: "/api/groups/:name/interfaces", access: "monitor", tag: N, summary: "The group's interfaces (VXLAN segments) and static routes", params: S.PARAMS_GROUP }, (c) => {
    const g = view().group(c.params.name!);
    return { interfaces: g.interfaces, routes: g.routes };
  });
  route(app, { method: "PUT", url: "/api/groups/:name/interfaces", access: "operator", tag: N, summary: "Replace the group's interfaces", params: S.PARAMS_GROUP, body: S.INTERFACES_PUT }, (c) =>
    d.submit("sg.update", { name: c.params.name, interfaces: c.body.interfaces }, c.actor),
  );
  route(app, { method: "GET", url: "/api/groups/:name/policy", access: "monitor", tag: N, summary: "The group's policy and its revision", params: S.PARAMS_GROUP }, (c) => {
    const g = view().group(c.params.name!);
    return { group: c.params.name, policyRevision: g.policyRevision, policy: g.policy, hits: d.ruleHitsOf(c.params.name!) };
  });
  route(app, { method: "PUT", url: "/api/groups/:name/policy", access: "operator", tag: N, summary: "Apply a new policy (as rules, or as YAML/JSON text)", params: S.PARAMS_GROUP, body: S.POLICY_PUT }, (c) =>
    d.submit("policy.apply", { ...c.body, group: c.params.name }, c.actor),
  );

  // ---- staged changes and transitions
  const C = "changes";
  route(app, { method: "GET", url: "/api/groups/:name/changes", access: "monitor", tag: C, summary: "Pending changes beside the applied table: members and buckets before and after", params: S.PARAMS_GROUP }, (c) =>
    view().changes(c.params.name!, now()),
  );
  route(
    app,
    {
      method: "POST",
      url: "/api/groups/:name/changes/apply",
      access: "operator",
      tag: C,
      summary: "Apply the group's pending changes as one epoch change",
      description: "Answers once the change is durable; a make-before-break transition then runs (follow it at /api/groups/{name}/transition).",
      params: S.PARAMS_GROUP,
    },
    (c) => d.submit("changes.apply", { group: c.params.name }, c.actor),
  );
  route(app, { method: "DELETE", url: "/api/groups/:name/changes", access: "operator", tag: C, summary: "Discard every pending change of the group", params: S.PARAMS_GROUP }, (c) =>
    d.submit("changes.discard", { group: c.params.name }, c.actor),
  );
  route(app, { method: "DELETE", url: "/api/groups/:name/changes/:appliance", access: "operator", tag: C, summary: "Discard one appliance's pending change", params: S.PARAMS_GROUP_APPLIANCE }, (c) =>
    d.submit("changes.discard", { group: c.params.name, appliance: c.params.appliance }, c.actor),
  );
  route(app, { method: "GET", url: "/api/groups/:name/transition", access: "monitor", tag: C, summary: "The running transition with its progress (null: none)", params: S.PARAMS_GROUP }, (c) =>
    view().transition(c.params.name!, now()),
  );
  route(app, { method: "POST", url: "/api/groups/:name/upgrade", access: "operator", tag: C, summary: "Start a rolling upgrade (members may run either version meanwhile)", params: S.PARAMS_GROUP, body: S.UPGRADE_START }, (c) =>
    d.submit("sg.upgrade.start", { group: c.params.name, targetVersion: c.body.targetVersion }, c.actor),
  );
  route(app, { method: "POST", url: "/api/groups/:name/upgrade/finish", access: "operator", tag: C, summary: "Finish the rolling upgrade (every member runs the target version)", params: S.PARAMS_GROUP }, (c) =>
    d.submit("sg.upgrade.finish", { group: c.params.name }, c.actor),
  );
  route(app, { method: "GET", url: "/api/groups/:name/upgrade", access: "monitor", tag: C, summary: "The rolling upgrade: state, member in its cycle, what it waits for, every member's version", params: S.PARAMS_GROUP }, (c) =>
    d.upgradeStatus(c.params.name!),
  );
  for (const [verb, command, summary] of [
    ["pause", "sg.upgrade.pause", "Pause the rolling upgrade (the running step completes; no new step starts)"],
    ["resume", "sg.upgrade.resume", "Resume a paused upgrade (the paused step starts again)"],
    ["rollback", "sg.upgrade.rollback", "Roll back: members that moved return to the from version, one at a time"],
    ["abort", "sg.upgrade.abort", "End the upgrade where it stands (only when every member runs one version)"],
  ] as const) {
    route(app, { method: "POST", url: `/api/groups/:name/upgrade/${verb}`, access: "operator", tag: C, summary, params: S.PARAMS_GROUP }, (c) => d.submit(command, { group: c.params.name }, c.actor));
  }
}
