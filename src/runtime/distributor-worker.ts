// Entry of the distributor's worker thread (started by startDistributor in distributor.ts):
// opens the sockets, answers the caller's requests in the order they were posted, and posts
// log lines and load samples (utilization, frames/s, once per loadIntervalMs) back (the caller
// owns the logger and judges the load).
//
// Invariants: "ready" or "failed" is the first reply (besides logs); after "close" the
// sockets and the timer are gone before "closed" is posted. An assertion in the data path is
// not caught here: it ends the worker with an error event, which the caller treats as fatal.

import { parentPort, workerData, type MessagePort } from "node:worker_threads";
import { assert } from "../stdx/assert.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import { DistributorSockets, type DistributorWorkerData, type DistributorWorkerReply, type DistributorWorkerRequest } from "./distributor.js";

function parentPortOf(): MessagePort {
  assert(parentPort !== null, "distributor-worker.ts runs as a worker thread (see startDistributor)");
  return parentPort;
}
const port = parentPortOf();
const data = workerData as DistributorWorkerData;

function reply(message: DistributorWorkerReply): void {
  port.postMessage(message);
}

async function main(): Promise<void> {
  let sockets: DistributorSockets;
  try {
    sockets = await DistributorSockets.open({
      vxlanListen: data.vxlanListen,
      memberLinkListen: data.memberLinkListen,
      socketBufferBytes: data.socketBufferBytes,
      neighboursMax: data.neighboursMax,
      // Both threads read performance.now() from their own origin: express times in the caller's.
      clockOffsetMs: performance.timeOrigin - data.timeOriginMs,
      log: (level, fields, message) => reply({ type: "log", level, fields, message }),
      loadIntervalMs: data.loadIntervalMs,
      onLoad: (load) => reply({ type: "load", load }),
    });
  } catch (error) {
    if (error instanceof TandemError) reply({ type: "failed", code: error.code, message: error.message, details: error.details });
    else reply({ type: "failed", code: ErrorCode.INTERNAL, message: String(error) });
    port.close();
    return;
  }
  port.on("message", (request: DistributorWorkerRequest) => {
    switch (request.type) {
      case "update":
        sockets.update(request.groups);
        return;
      case "stats":
        reply({ type: "stats", id: request.id, stats: sockets.stats() });
        return;
      case "close":
        void sockets.close().then(() => {
          reply({ type: "closed" });
          port.close();
        });
        return;
    }
  });
  reply({ type: "ready", vxlan: sockets.vxlan, memberLink: sockets.memberLink });
}

void main();
