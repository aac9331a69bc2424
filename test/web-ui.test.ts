// The web UI in a real browser (Debian's chromium driven by playwright-core) against a whole
// local cluster in this process (orchestrator + distributor, three member processes, the
// built-in traffic generator; no lab, no root). It signs in with the admin token and watches
// three members UP; scales out with a fourth member and drains another through the UI's
// actions (with their confirmations); runs a verification; SIGKILLs a member and watches it
// turn DOWN while the bucket map loses its colour; applies a policy with a deliberate error and
// sees it reported at the rule and field, then a good one; searches connections; and signs in
// with a monitor token, which sees everything and can act on nothing. (The kill comes after
// the staged changes: applying waits for the failure's re-protection to finish, which this
// test does not need to depend on.) A screenshot of each page is
// saved under test-results/. Every wait is a browser-side wait with a timeout, never a sleep.
//
// Skipped (with a warning) where /usr/bin/chromium is missing: apt-get install chromium.

import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { LocalCluster } from "../src/runtime/local-cluster.js";
import { acquireLabLock } from "./fixtures/lab-lock.js";

const CHROMIUM = "/usr/bin/chromium";
const HAVE_CHROMIUM = existsSync(CHROMIUM);
if (!HAVE_CHROMIUM) console.warn(`test/web-ui.test.ts skipped: ${CHROMIUM} is missing (apt-get install chromium)`);

const RESULTS = "test-results";
/** Longest a UI change may take to show: a failover is ~1 s here, a join or drain a few seconds. */
const SHOW_MS = 20_000;
/**
 * Failure detection: 1 s instead of tandem up's 200 ms. This test is about what the UI shows,
 * not how fast the cluster notices, and a browser rendering beside four node processes on a
 * small CI machine can delay a heartbeat past 200 ms (a flap the test would then watch).
 */
const DOWN_AFTER_MS = 1_000;

describe.skipIf(!HAVE_CHROMIUM)("web UI in chromium over a 3-member local cluster", () => {
  let dir = "";
  let cluster: LocalCluster;
  let browser: Browser;
  let page: Page;
  let release: (() => void) | null = null;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    // One whole cluster at a time on the machine: the lab lock also keeps this file from
    // starving test/cluster-e2e.test.ts of CPU (its failover times are measured).
    release = await acquireLabLock();
    mkdirSync(RESULTS, { recursive: true });
    dir = mkdtempSync(join(tmpdir(), "tandem-web-ui-"));
    cluster = new LocalCluster({ dataDir: dir, members: 3, lab: false, listen: { host: "127.0.0.1", port: 0 }, logger: pino({ level: "silent" }), traffic: true, downAfterMs: DOWN_AFTER_MS });
    await cluster.start();
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-background-networking"] });
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on("pageerror", (error) => pageErrors.push(error.message));
  }, 660_000);

  afterAll(async () => {
    await browser?.close();
    await cluster?.stop();
    if (dir !== "") rmSync(dir, { recursive: true, force: true });
    release?.();
  }, 30_000);

  // On a failure: what the cluster did lately, and what the page showed (for CI's log).
  afterEach(async (context) => {
    if (context.task.result?.state !== "fail" || cluster === undefined) return;
    const client = cluster.adminClient();
    const events = (await client.events({ limit: 20 })).map((e) => `  ${e.at} ${e.kind}: ${e.message}`).join("\n");
    const members = (await client.listMembers("default")).map((m) => `${m.appliance}:${m.state}`).join(" ");
    const transition = await client.transition("default");
    console.log(`web-ui failure context: members ${members}; transition ${JSON.stringify(transition)}\nrecent events:\n${events}`);
    await shot(`failed-${context.task.name.slice(0, 40).replace(/[^a-z0-9]+/gi, "-")}`);
  });

  const shot = (name: string) => page.screenshot({ path: join(RESULTS, `web-ui-${name}.png`), fullPage: true });
  const row = (appliance: string, state?: string) => page.locator(`tr[data-appliance="${appliance}"]${state === undefined ? "" : `[data-state="${state}"]`}`);
  const bucketMap = () => page.locator("figure.bucket-map");

  /** Clicks an action button, then the confirmation dialog's button. */
  async function confirmVia(button: string, confirm: string): Promise<void> {
    await page.getByRole("button", { name: button, exact: true }).click();
    const dialog = page.locator("dialog.confirm[open]");
    await dialog.waitFor({ timeout: 5_000 });
    await dialog.getByRole("button", { name: confirm, exact: true }).click();
    await dialog.waitFor({ state: "detached", timeout: 5_000 });
  }

  /** Waits for a member-owned bucket count on the map, and returns its owners. */
  async function ownersShown(count: number): Promise<Record<string, number>> {
    await page.locator(`figure.bucket-map[data-owners="${count}"]`).waitFor({ timeout: SHOW_MS });
    return JSON.parse((await bucketMap().getAttribute("data-owned"))!) as Record<string, number>;
  }

  async function applyStagedChanges(): Promise<void> {
    await page.locator('section.changes[data-pending="1"]').waitFor({ timeout: 5_000 });
    // Changes apply between transitions: wait for the one running (e.g. a reprotect) to end.
    await page.locator('[data-testid="transition"][data-running="false"]').waitFor({ timeout: SHOW_MS });
    await confirmVia("Apply changes…", "Apply");
  }

  /** Submits the connection search and waits for its answer; true once answered. */
  async function search(): Promise<boolean> {
    const form = page.locator("form[data-searches]");
    const before = Number(await form.getAttribute("data-searches"));
    await page.getByRole("button", { name: "Search" }).click();
    await page.locator(`form[data-searches="${before + 1}"]`).waitFor({ timeout: 10_000 });
    return true;
  }

  async function signIn(token: string): Promise<void> {
    await page.goto(`${cluster.url}/`);
    await page.getByLabel("API token").fill(token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("navigation", { name: "Main" }).waitFor({ timeout: 10_000 });
  }

  it("signs in with the admin token and shows the group's three members UP, charts and the bucket map", async () => {
    await page.goto(`${cluster.url}/`);
    await page.getByLabel("API token").waitFor();
    await shot("sign-in");
    await signIn(cluster.adminToken!);
    await page.locator('tr[data-group="default"]').waitFor({ timeout: 10_000 });
    await page.locator("table.pool, section >> text=The pool is empty").first().waitFor();
    // The distributor's load, as the orchestrator measures it (the generator keeps it busy).
    await expect.poll(() => page.locator('[data-testid="distributor-load"]').textContent(), { timeout: SHOW_MS }).toMatch(/Distributor: [\d.,]+% busy, [\d,]+ frames\/s/);
    await shot("overview");
    await page.getByRole("link", { name: "default", exact: true }).first().click();
    await expect.poll(() => page.locator('tr[data-appliance][data-state="UP"]').count(), { timeout: SHOW_MS }).toBe(3);
    const owned = await ownersShown(3);
    expect(Object.keys(owned).sort()).toEqual(["local-1", "local-2", "local-3"]);
    expect(Object.values(owned).reduce((a, b) => a + b, 0)).toBe(8192);
    await page.locator("figure.chart canvas").first().waitFor({ timeout: SHOW_MS });
    await expect.poll(() => page.locator('[data-testid="live-status"]').textContent()).toContain("live");
  });

  it("scales out: a fourth appliance from the pool is assigned, applied, and takes its share of buckets", async () => {
    await cluster.addLocalAppliance(4); // the process starts; it heartbeats into the pool
    await page.getByText(/local-4 \(local, \d+ cores, alive\)/).waitFor({ timeout: SHOW_MS });
    await confirmVia("Assign local-4", "Stage assignment");
    await page.locator(".pending-list").getByText("local-4").waitFor({ timeout: 5_000 });
    await page.locator("table.beside").waitFor();
    await shot("group-pending");
    await applyStagedChanges();
    await row("local-4", "UP").waitFor({ timeout: SHOW_MS });
    const owned = await ownersShown(4);
    expect(Object.keys(owned).sort()).toEqual(["local-1", "local-2", "local-3", "local-4"]);
    await page.locator('[data-testid="transition"][data-running="false"]').waitFor({ timeout: SHOW_MS });
  });

  it("drains a member: it leaves the table and ends DETACHED; a verification reports every bucket", async () => {
    await confirmVia("Drain local-2", "Stage drain");
    await applyStagedChanges();
    await row("local-2", "DETACHED").waitFor({ timeout: SHOW_MS });
    const owned = await ownersShown(3);
    expect(Object.keys(owned).sort()).toEqual(["local-1", "local-3", "local-4"]);
    await page.locator('[data-testid="transition"][data-running="false"]').waitFor({ timeout: SHOW_MS });
    await confirmVia("Run verification…", "Run verification");
    await page.locator('[data-testid="verify-result"][data-done="true"]').waitFor({ timeout: SHOW_MS });
    expect(await page.locator('[data-testid="verify-result"]').textContent()).toMatch(/Checked [\d,]+ buckets/);
    await shot("group-drained");
  });

  it("shows a SIGKILLed member turn DOWN and the bucket map lose its colour", async () => {
    const epochBefore = Number(await bucketMap().getAttribute("data-epoch"));
    const canvasBefore = await page.locator("figure.bucket-map canvas").evaluate((c) => (c as unknown as { toDataURL(): string }).toDataURL());
    cluster.members.get("local-1")!.process.kill("SIGKILL");
    await row("local-1", "DOWN").waitFor({ timeout: SHOW_MS });
    const owned = await ownersShown(2);
    expect(Object.keys(owned).sort()).toEqual(["local-3", "local-4"]);
    expect(Number(await bucketMap().getAttribute("data-epoch"))).toBeGreaterThan(epochBefore);
    const canvasAfter = await page.locator("figure.bucket-map canvas").evaluate((c) => (c as unknown as { toDataURL(): string }).toDataURL());
    expect(canvasAfter).not.toBe(canvasBefore);
    await expect.poll(() => page.locator("ol.timeline").textContent(), { timeout: SHOW_MS }).toContain("local-1 in default: UP -> DOWN");
    // The notices of earlier actions would cover the timeline in the picture (docs/ui-group.png).
    const dismiss = page.getByRole("button", { name: "Dismiss" });
    while ((await dismiss.count()) > 0) await dismiss.first().click();
    await shot("group");
  });

  it("reports a policy error at its rule and field, then applies a good policy and counts its hits", async () => {
    await page.getByRole("link", { name: /^Policy/ }).click();
    await page.locator('tr[data-rule="allow-all"]').waitFor({ timeout: 10_000 });
    const bad = ["rules:", "  - name: web", "    protocol: tcp", "    ports: [80, 99999]", "    action: accept", "  - name: allow-all", "    action: accept", ""].join("\n");
    await page.getByLabel("Policy as YAML").fill(bad);
    await confirmVia("Apply policy…", "Apply policy");
    const error = page.locator("#policy-error");
    await error.waitFor({ timeout: 10_000 });
    expect(await error.getAttribute("data-code")).toBe("TANDEM_POLICY_INVALID");
    expect(await error.getAttribute("data-rule")).toBe("web");
    expect(await error.getAttribute("data-field")).toBe("ports");
    expect(await error.getAttribute("data-line")).toBe("4");
    expect(await error.textContent()).toMatch(/Rule “web” \(#1\), field ports, line 4/);
    await page.locator('.gutter li.error-line[data-line="4"]').waitFor();
    expect(await page.getByLabel("Policy as YAML").getAttribute("aria-invalid")).toBe("true");
    await shot("policy-error");

    await page.getByLabel("Policy as YAML").fill(bad.replace("99999", "443"));
    await confirmVia("Apply policy…", "Apply policy");
    await page.locator('tr[data-rule="web"]').waitFor({ timeout: 10_000 });
    await error.waitFor({ state: "detached" });
    // The generator's TCP flows go to ports 80, 443 and 8080: both rules see hits.
    await expect.poll(async () => Number(await page.locator('tr[data-rule="web"]').getAttribute("data-hits")), { timeout: SHOW_MS }).toBeGreaterThan(0);
    await shot("policy");
  });

  it("finds connections by destination, with owner, backup and state", async () => {
    await page.getByRole("link", { name: "Connections" }).click();
    await page.getByLabel("Destination address").fill("198.19.2.10");
    await page.getByLabel("Destination port").fill("80");
    // The generator's flows come and go: search again until one to 198.19.2.10:80 is live.
    await expect.poll(async () => (await search()) && page.locator("table.connections tbody tr").count(), { timeout: SHOW_MS, interval: 200 }).toBeGreaterThan(0);
    const firstRow = page.locator("table.connections tbody tr").first();
    expect(await firstRow.textContent()).toMatch(/local-[34]/);
    await page.getByLabel("Destination address").fill("not-an-address");
    await search();
    await page.locator("#conn-error").waitFor({ timeout: 5_000 });
    expect(await page.getByLabel("Destination address").getAttribute("aria-invalid")).toBe("true");
    await page.getByLabel("Destination address").fill("198.19.2.10");
    await search();
    expect(await page.locator("#conn-error").count()).toBe(0);
    await shot("connections");
  });

  it("shows a rolling upgrade waiting on the DOWN member, pauses it and aborts it", async () => {
    await cluster.adminClient().startUpgrade("default", "9.9.9");
    await page.getByRole("link", { name: "default", exact: true }).first().click();
    const panel = page.locator('[data-testid="upgrade"]');
    await page.locator('[data-testid="upgrade"][data-state="running"]').waitFor({ timeout: SHOW_MS });
    // local-1 was SIGKILLed above: the orchestrator starts no member while one is DOWN, and says so.
    await expect.poll(() => panel.locator('[data-testid="upgrade-step"]').textContent(), { timeout: SHOW_MS }).toContain("local-1 is DOWN");
    await panel.getByRole("button", { name: "Pause", exact: true }).click();
    await page.locator('[data-testid="upgrade"][data-state="paused"]').waitFor({ timeout: SHOW_MS });
    expect(await panel.locator('[data-testid="upgrade-reason"]').textContent()).toContain("paused by admin");
    await shot("group-upgrade-paused");
    await panel.getByRole("button", { name: "Abort", exact: true }).click();
    await page.locator("dialog.confirm[open]").getByRole("button", { name: "Abort", exact: true }).click();
    await page.locator('[data-testid="upgrade"][data-state="none"]').waitFor({ timeout: SHOW_MS });
    expect((await cluster.adminClient().events({ limit: 20 })).map((e) => e.kind)).toEqual(expect.arrayContaining(["upgrade.started", "upgrade.paused", "upgrade.aborted"]));
  });

  it("lets a monitor token see everything and act on nothing", async () => {
    const { token } = await cluster.adminClient().createToken("viewer", "monitor");
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("API token").waitFor();
    await signIn(token);
    expect(await page.locator(".who").textContent()).toContain("read-only");
    await page.goto(`${cluster.url}/#/groups/default`);
    await row("local-3", "UP").waitFor({ timeout: SHOW_MS });
    await page.locator("figure.bucket-map[data-owners]").waitFor();
    for (const name of [/^Drain/, /^Remove/, /^Apply/, /^Discard/, /^Run verification/, /^Assign/]) {
      expect(await page.getByRole("button", { name }).count(), String(name)).toBe(0);
    }
    await shot("monitor-group");
    await page.goto(`${cluster.url}/#/groups/default/policy`);
    await page.locator('tr[data-rule="web"]').waitFor({ timeout: 10_000 });
    expect(await page.getByLabel(/Policy as YAML/).getAttribute("readonly")).not.toBeNull();
    expect(await page.getByRole("button", { name: /^Apply policy/ }).count()).toBe(0);
    await page.goto(`${cluster.url}/#/`);
    await page.locator('tr[data-group="default"]').waitFor();
    expect(await page.getByRole("button", { name: /^Register/ }).count()).toBe(0);
  });

  it("fits a narrow window without sideways scrolling of the page", async () => {
    await page.setViewportSize({ width: 390, height: 800 });
    await page.goto(`${cluster.url}/#/groups/default`);
    await row("local-3").waitFor({ timeout: SHOW_MS });
    // (A string: this file is type-checked without the DOM library.)
    const overflow = Number(await page.evaluate("document.documentElement.scrollWidth - window.innerWidth"));
    expect(overflow).toBeLessThanOrEqual(1);
    await shot("narrow");
    expect(pageErrors).toEqual([]);
  });
});
