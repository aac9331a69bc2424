// The Tandem web UI: sign-in, then a shell (navigation, live status, who is signed in) around
// the pages. Routes live in the URL's hash (#/groups/default), so the orchestrator serves one
// index.html and a page survives a reload. One live stream per tab feeds every page.

import { render } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import { ConfirmHost, Notices } from "./components/dialogs.js";
import { hrefOf, messageOf, routeOf, type Route } from "./format.js";
import { Live, useLive } from "./live.js";
import { ConnectionsPage } from "./pages/connections.js";
import { GroupPage } from "./pages/group.js";
import { OverviewPage } from "./pages/overview.js";
import { PolicyPage } from "./pages/policy.js";
import { forgetToken, signIn, storedToken, type Session } from "./session.js";
import "./style.css";

function useRoute(): Route {
  const [route, setRoute] = useState(routeOf(window.location.hash));
  useEffect(() => {
    const onHash = () => setRoute(routeOf(window.location.hash));
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);
  return route;
}

function SignIn(props: { onSignedIn: (s: Session) => void; notice: string | null }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | null>(props.notice);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      props.onSignedIn(await signIn(token));
    } catch (err) {
      setError(messageOf(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="sign-in" id="main">
      <h1>Tandem</h1>
      <p class="muted">Gateway cluster console</p>
      <form onSubmit={(e) => void submit(e)}>
        <label for="token">API token</label>
        <input id="token" name="token" type="password" autoComplete="off" required value={token} onInput={(e) => setToken(e.currentTarget.value)} aria-describedby="token-hint" />
        <p id="token-hint" class="hint">
          The first admin token is in <code>DATA_DIR/admin-token</code> (tandem up prints where). Make others with <code>tandem token create NAME --role monitor</code> (read-only) or{" "}
          <code>--role operator</code>. The token stays in this tab only.
        </p>
        <button type="submit" class="primary" disabled={busy || token.trim() === ""}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
        {error !== null && (
          <p role="alert" class="error-box">
            {error}
          </p>
        )}
      </form>
    </main>
  );
}

function Shell(props: { session: Session; onSignOut: (notice: string | null) => void }) {
  const { session } = props;
  const live = useMemo(() => new Live(session.client, (message) => props.onSignOut(`Signed out: ${message}`)), [session]);
  useEffect(() => {
    live.start();
    return () => live.stop();
  }, [live]);
  const state = useLive(live);
  const route = useRoute();
  const groups = state.snapshot?.groups.map((g) => g.name) ?? [];
  const current = (r: Route) => (hrefOf(r) === hrefOf(route) ? "page" : undefined);
  let page;
  switch (route.page) {
    case "overview":
      page = <OverviewPage session={session} state={state} />;
      break;
    case "group":
      page = <GroupPage key={route.group} session={session} state={state} group={route.group} />;
      break;
    case "policy":
      page = <PolicyPage key={route.group} session={session} state={state} group={route.group} />;
      break;
    case "connections":
      page = <ConnectionsPage session={session} state={state} />;
      break;
  }
  return (
    <>
      <button type="button" class="skip" onClick={() => document.getElementById("main")?.focus()}>
        Skip to content
      </button>
      <header class="top">
        <a class="brand" href="#/">
          Tandem
        </a>
        <nav aria-label="Main">
          <a href={hrefOf({ page: "overview" })} aria-current={current({ page: "overview" })}>
            Overview
          </a>
          {groups.map((g) => (
            <a key={g} href={hrefOf({ page: "group", group: g })} aria-current={current({ page: "group", group: g })}>
              {g}
            </a>
          ))}
          <a href={hrefOf({ page: "connections" })} aria-current={current({ page: "connections" })}>
            Connections
          </a>
        </nav>
        <span class={`live ${state.status}`} title={state.problem ?? ""} data-testid="live-status">
          <span aria-hidden="true">●</span> {state.status}
        </span>
        <span class="who" data-role={session.role}>
          {session.name} ({session.role}){!session.canAct && <span class="badge muted">read-only</span>}
        </span>
        <button type="button" onClick={() => props.onSignOut(null)}>
          Sign out
        </button>
      </header>
      {state.problem !== null && state.status !== "live" && (
        <p class="banner" role="status">
          {state.status === "standby" ? "This orchestrator is a standby: " : "Live updates interrupted: "}
          {state.problem}
        </p>
      )}
      <main id="main" tabIndex={-1}>
        {page}
      </main>
      <ConfirmHost />
      <Notices />
    </>
  );
}

function App() {
  const [session, setSession] = useState<Session | null>(null);
  const [checking, setChecking] = useState(storedToken() !== null);
  const [notice, setNotice] = useState<string | null>(null);
  useEffect(() => {
    const token = storedToken();
    if (token === null) return;
    signIn(token).then(
      (s) => {
        setSession(s);
        setChecking(false);
      },
      (error: unknown) => {
        forgetToken();
        setNotice(`Please sign in again: ${messageOf(error)}`);
        setChecking(false);
      },
    );
  }, []);
  if (checking) return <p class="muted">Signing in…</p>;
  if (session === null) return <SignIn onSignedIn={setSession} notice={notice} />;
  return (
    <Shell
      session={session}
      onSignOut={(message) => {
        forgetToken();
        setNotice(message);
        setSession(null);
      }}
    />
  );
}

render(<App />, document.getElementById("app")!);
