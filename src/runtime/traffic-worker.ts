// The built-in traffic generator on a thread of its own: `tandem up` runs the orchestrator's
// control plane on its main thread, and the generator's sockets and timers there would compete
// with heartbeats (a late heartbeat is a false DOWN). This file is both the caller side
// (startTrafficGeneratorThread) and the worker's entry (when loaded as a worker with
// workerData.tandemTrafficWorker).
//
// Invariant: the first reply of the worker is "ready" (with the sites' bound addresses) or
// "failed"; "stop" closes the generator before "stopped" is posted.

import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import type { Endpoint } from "./member-link.js";
import { startTrafficGenerator, type TrafficGeneratorOptions, type TrafficStats } from "./traffic-generator.js";

type Request = { type: "stats" } | { type: "stop" };
type Reply =
  | { type: "ready"; sites: { client: Endpoint; server: Endpoint } }
  | { type: "failed"; code: string; message: string }
  | { type: "stats"; stats: TrafficStats }
  | { type: "stopped" };

export interface TrafficGeneratorThread {
  readonly sites: { client: Endpoint; server: Endpoint };
  stats(): Promise<TrafficStats>;
  stop(): Promise<void>;
}

function workerUrl(): URL {
  const here = import.meta.url;
  const url = here.endsWith(".ts") ? new URL("../../dist/src/runtime/traffic-worker.js", here) : here.endsWith(".js") ? new URL(here) : new URL(here);
  const path = fileURLToPath(url);
  if (!existsSync(path)) throw new TandemError(ErrorCode.FILE_NOT_FOUND, `traffic worker script ${path} is missing: build with "npx tsc -p ."`, { path });
  return url;
}

export function startTrafficGeneratorThread(options: TrafficGeneratorOptions): Promise<TrafficGeneratorThread> {
  const worker = new Worker(workerUrl(), { workerData: { tandemTrafficWorker: true, options } });
  worker.unref();
  let waiting: ((reply: Reply) => void)[] = [];
  return new Promise((resolve, reject) => {
    worker.once("error", reject);
    worker.on("message", (reply: Reply) => {
      if (reply.type === "ready") {
        resolve({
          sites: reply.sites,
          stats: () =>
            new Promise((res) => {
              waiting.push((r) => res((r as { stats: TrafficStats }).stats));
              worker.postMessage({ type: "stats" } satisfies Request);
            }),
          stop: () =>
            new Promise((res) => {
              worker.once("exit", () => res());
              worker.postMessage({ type: "stop" } satisfies Request);
            }),
        });
      } else if (reply.type === "failed") {
        reject(new TandemError(reply.code as ErrorCode, reply.message));
      } else {
        const [first, ...rest] = waiting;
        waiting = rest;
        first?.(reply);
      }
    });
  });
}

// ---- worker side -------------------------------------------------------------------------------

if (!isMainThread && (workerData as { tandemTrafficWorker?: boolean } | null)?.tandemTrafficWorker === true && parentPort !== null) {
  const port = parentPort;
  const options = (workerData as { options: TrafficGeneratorOptions }).options;
  startTrafficGenerator(options).then(
    (generator) => {
      port.postMessage({ type: "ready", sites: generator.sites } satisfies Reply);
      port.on("message", (request: Request) => {
        if (request.type === "stats") port.postMessage({ type: "stats", stats: generator.stats() } satisfies Reply);
        else
          void generator.stop().then(() => {
            port.postMessage({ type: "stopped" } satisfies Reply);
            port.close();
          });
      });
    },
    (error: unknown) => {
      const e = error instanceof TandemError ? error : new TandemError(ErrorCode.INTERNAL, String(error));
      port.postMessage({ type: "failed", code: e.code, message: e.message } satisfies Reply);
      port.close();
    },
  );
}
