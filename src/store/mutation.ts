// What both store implementations share: checking a mutation before it is written, encoding
// documents and records as JSON, decoding them on load, and bounding list queries.
// Invariants: a mutation that reaches a backend names known collections, non-empty ids, touches
// each document at most once, and every value is JSON text; decoded rows are checked, and a row
// that is not what the store wrote is reported as TANDEM_STORE_CORRUPT, never returned.
import { assert } from "../stdx/assert.js";
import { ErrorCode, TandemError } from "../stdx/errors.js";
import {
  COLLECTIONS,
  RECORDS_LIMIT_MAX,
  type AuditRecord,
  type Collection,
  type Document,
  type EventRecord,
  type Mutation,
} from "./store.js";

export interface EncodedMutation {
  puts: { collection: Collection; id: string; json: string }[];
  deletes: { collection: Collection; id: string }[];
  audit: string[]; // JSON without seq: the store assigns it
  events: string[];
}

function encodeJson(value: unknown, what: string): string {
  const json = JSON.stringify(value);
  assert(typeof json === "string", `${what} is JSON-serialisable`);
  return json;
}

/** Checks a mutation (programmer errors are assertions) and encodes its values. */
export function encodeMutation(mutation: Mutation): EncodedMutation {
  assert(Array.isArray(mutation.puts) && Array.isArray(mutation.deletes), "mutation has puts and deletes");
  assert(Array.isArray(mutation.audit) && Array.isArray(mutation.events), "mutation has audit and events");
  const touched = new Set<string>();
  const touch = (collection: Collection, id: string): void => {
    assert(COLLECTIONS.includes(collection), `unknown collection ${String(collection)}`);
    assert(typeof id === "string" && id.length > 0, "document id is a non-empty string");
    const key = `${collection}\u0000${id}`;
    assert(!touched.has(key), `document ${collection}/${id} appears twice in one mutation`);
    touched.add(key);
  };
  const puts = mutation.puts.map(({ collection, doc }) => {
    touch(collection, doc.id);
    return { collection, id: doc.id, json: encodeJson(doc, `document ${collection}/${doc.id}`) };
  });
  const deletes = mutation.deletes.map(({ collection, id }) => {
    touch(collection, id);
    return { collection, id };
  });
  const audit = mutation.audit.map((record) => encodeJson(withoutSeq(record), "audit record"));
  const events = mutation.events.map((record) => encodeJson(withoutSeq(record), "event record"));
  return { puts, deletes, audit, events };
}

function withoutSeq<T extends { seq?: number }>(record: T): Omit<T, "seq"> {
  const { seq: _seq, ...rest } = record;
  return rest;
}

function corrupt(what: string, detail: string): TandemError {
  return new TandemError(ErrorCode.STORE_CORRUPT, `store holds an unreadable ${what}: ${detail}`);
}

function parseObject(json: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (error) {
    throw corrupt(what, (error as Error).message);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw corrupt(what, "not a JSON object");
  return value as Record<string, unknown>;
}

export function decodeDocument(collection: string, id: string, json: string): Document {
  const doc = parseObject(json, `document ${collection}/${id}`);
  if (doc.id !== id) throw corrupt(`document ${collection}/${id}`, `its id field is ${JSON.stringify(doc.id)}`);
  return doc as Document;
}

export function decodeAudit(seq: number, json: string): AuditRecord {
  const record = parseObject(json, `audit record ${seq}`);
  return { seq, ...record } as AuditRecord;
}

export function decodeEvent(seq: number, json: string): EventRecord {
  const record = parseObject(json, `event record ${seq}`);
  return { seq, ...record } as EventRecord;
}

/** Sorts documents by id (UTF-16 order, the same for every backend). */
export function sortById(docs: Document[]): Document[] {
  return docs.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** A list query's limit: the default when absent, at most RECORDS_LIMIT_MAX. */
export function recordsLimit(limit: number | undefined, limitDefault: number): number {
  if (limit === undefined) return limitDefault;
  if (!Number.isInteger(limit) || limit < 1) {
    throw new TandemError(ErrorCode.INVALID_ARGUMENT, `limit must be a positive integer, got ${String(limit)}`);
  }
  return Math.min(limit, RECORDS_LIMIT_MAX);
}

/** A seq bound (beforeSeq / afterSeq): absent, or a non-negative integer. */
export function seqBound(seq: number | undefined, name: string): number | undefined {
  if (seq === undefined) return undefined;
  if (!Number.isInteger(seq) || seq < 0) {
    throw new TandemError(ErrorCode.INVALID_ARGUMENT, `${name} must be a non-negative integer, got ${String(seq)}`);
  }
  return seq;
}
