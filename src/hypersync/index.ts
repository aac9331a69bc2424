// HyperSync's public surface: records, datagrams, the reliable per-peer channel, digests,
// protocol versions.
// Other planes import from here, not from the files behind it.

export * from "./constants.js";
export * from "./records.js";
export * from "./datagram.js";
export * from "./channel.js";
export * from "./digest.js";
export * from "./protocol-version.js";
