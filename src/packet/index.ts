// Public surface of the packet codecs: the view, the parser, checksums, the builder, address
// text helpers and the flow hash. Other planes import from here, not from the files.
// (pcap I/O is exported by the lead once it lands.)

export * from "./view.js";
export * from "./parse.js";
export * from "./checksum.js";
export * from "./builder.js";
export * from "./addr.js";
export * from "./flow-hash.js";
