// Capture file I/O: a pcap / pcapng reader over a file already in memory, and a pcap writer.
//
// The replay tool reads a file with fs and hands the bytes here; this module does no I/O.
// Reading allocates nothing per frame: a CaptureReader is a cursor whose numeric fields
// (offset, capturedLength, linkType, timestampMs, ...) are overwritten by each next(), and the
// frame is the byte range [offset, offset + capturedLength) of `data`, the caller's buffer.
//
// Invariants the reader keeps, for any input bytes:
//   - it never throws on file content: a bad file is a CaptureError (a result with a reason);
//   - every next() either delivers a frame that lies inside `data` or moves past at least one
//     12-byte pcapng block / 16-byte pcap record, so reading ends after at most
//     data.length / 12 + 1 calls;
//   - frames before a truncated or corrupt record are still delivered; the reason is in
//     `error` once next() has returned false (`error === null` means the file ended cleanly);
//   - a delivered frame's linkType is one of LinkType (DLT 12 and 14 read as LinkType.RAW).
//
//   pcap:    | file header 24 | rec hdr 16 | frame | rec hdr 16 | frame | ...
//   pcapng:  | SHB | IDB | IDB | EPB | SPB | (any block) | ... | SHB (new section) | ...
//            each block: | type u32 | total length u32 | body ... | total length u32 |

import { assert } from "../stdx/assert.js";
import { ErrorCode } from "../stdx/errors.js";
import { LinkType } from "./view.js";

/** Sanity bound on one frame's captured length (libpcap's largest snapshot length). */
export const CAPTURED_LENGTH_MAX = 262144;
/** Bound on interfaces (IDBs) in one pcapng section: more is taken for a corrupt file. */
export const PCAPNG_INTERFACES_MAX = 4096;

const PCAP_FILE_HEADER_LENGTH = 24;
const PCAP_RECORD_HEADER_LENGTH = 16;
const PCAPNG_BLOCK_MIN_LENGTH = 12;
const PCAPNG_SHB_MIN_LENGTH = 28;

const MAGIC_PCAP_US = 0xa1b2c3d4;
const MAGIC_PCAP_NS = 0xa1b23c4d;
const PCAPNG_SHB_TYPE = 0x0a0d0d0a;
const PCAPNG_BYTE_ORDER_MAGIC = 0x1a2b3c4d;

const BLOCK_PACKET_OBSOLETE = 2;
const BLOCK_INTERFACE = 1;
const BLOCK_SIMPLE_PACKET = 3;
const BLOCK_ENHANCED_PACKET = 6;

const OPTION_END = 0;
const OPTION_IF_TSRESOL = 9;
const OPTION_IF_TSOFFSET = 14;

const TWO_POW_32 = 4294967296;

/** A capture that cannot be read (or not all of it), as a value: never thrown. */
export interface CaptureError {
  readonly ok: false;
  readonly code: ErrorCode;
  readonly message: string;
}

function captureError(code: ErrorCode, message: string): CaptureError {
  return { ok: false, code, message };
}

// ---- link types -------------------------------------------------------------------------

const LINKTYPE_NAMES: ReadonlyMap<number, string> = buildLinkTypeNames();

function buildLinkTypeNames(): Map<number, string> {
  // LINKTYPE_ names as on tcpdump.org/linktypes.html (the values written in files, which can
  // differ from a platform's DLT_ values). 12 and 14 are the DLT_RAW values older files hold.
  const names = new Map<number, string>([
    [0, "NULL"], [1, "ETHERNET"], [3, "AX25"], [6, "IEEE802_5"], [7, "ARCNET_BSD"],
    [8, "SLIP"], [9, "PPP"], [10, "FDDI"], [12, "RAW (DLT 12)"], [14, "RAW (DLT 14)"],
    [50, "PPP_HDLC"], [51, "PPP_ETHER"], [99, "SYMANTEC_FIREWALL"], [100, "ATM_RFC1483"],
    [101, "RAW"], [104, "C_HDLC"], [105, "IEEE802_11"], [107, "FRELAY"], [108, "LOOP"],
    [113, "LINUX_SLL"], [114, "LTALK"], [117, "PFLOG"], [119, "IEEE802_11_PRISM"],
    [122, "IP_OVER_FC"], [123, "SUNATM"], [127, "IEEE802_11_RADIOTAP"], [129, "ARCNET_LINUX"],
    [138, "APPLE_IP_OVER_IEEE1394"], [139, "MTP2_WITH_PHDR"], [140, "MTP2"], [141, "MTP3"],
    [142, "SCCP"], [143, "DOCSIS"], [144, "LINUX_IRDA"], [163, "IEEE802_11_AVS"],
    [164, "JUNIPER_MONITOR"], [165, "BACNET_MS_TP"], [166, "PPP_PPPD"], [169, "GPRS_LLC"],
    [170, "GPF_T"], [171, "GPF_F"], [177, "LINUX_LAPD"], [178, "JUNIPER_ETHER"], [182, "MFR"],
    [187, "BLUETOOTH_HCI_H4"], [189, "USB_LINUX"], [192, "PPI"],
    [195, "IEEE802_15_4_WITHFCS"], [196, "SITA"], [197, "ERF"],
    [201, "BLUETOOTH_HCI_H4_WITH_PHDR"], [202, "AX25_KISS"], [203, "LAPD"],
    [204, "PPP_WITH_DIR"], [205, "C_HDLC_WITH_DIR"], [206, "FRELAY_WITH_DIR"],
    [207, "LAPB_WITH_DIR"], [209, "IPMB_LINUX"], [210, "FLEXRAY"], [212, "LIN"],
    [215, "IEEE802_15_4_NONASK_PHY"], [220, "USB_LINUX_MMAPPED"], [224, "FC_2"],
    [225, "FC_2_WITH_FRAME_DELIMS"], [226, "IPNET"], [227, "CAN_SOCKETCAN"], [228, "IPV4"],
    [229, "IPV6"], [230, "IEEE802_15_4_NOFCS"], [231, "DBUS"], [235, "DVB_CI"],
    [236, "MUX27010"], [237, "STANAG_5066_D_PDU"], [239, "NFLOG"], [240, "NETANALYZER"],
    [241, "NETANALYZER_TRANSPARENT"], [242, "IPOIB"], [243, "MPEG_2_TS"], [244, "NG40"],
    [245, "NFC_LLCP"], [246, "PFSYNC"], [247, "INFINIBAND"], [248, "SCTP"], [249, "USBPCAP"],
    [250, "RTAC_SERIAL"], [251, "BLUETOOTH_LE_LL"], [252, "WIRESHARK_UPPER_PDU"],
    [253, "NETLINK"], [254, "BLUETOOTH_LINUX_MONITOR"], [255, "BLUETOOTH_BREDR_BB"],
    [256, "BLUETOOTH_LE_LL_WITH_PHDR"], [257, "PROFIBUS_DL"], [258, "PKTAP"], [259, "EPON"],
    [260, "IPMI_HPM_2"], [261, "ZWAVE_R1_R2"], [262, "ZWAVE_R3"], [263, "WATTSTOPPER_DLM"],
    [264, "ISO_14443"], [265, "RDS"], [266, "USB_DARWIN"], [268, "SDLC"], [270, "LORATAP"],
    [271, "VSOCK"], [272, "NORDIC_BLE"], [273, "DOCSIS31_XRA31"], [274, "ETHERNET_MPACKET"],
    [275, "DISPLAYPORT_AUX"], [276, "LINUX_SLL2"], [281, "DSA_TAG_BRCM"],
    [282, "DSA_TAG_BRCM_PREPEND"], [284, "DSA_TAG_DSA"], [285, "DSA_TAG_EDSA"],
  ]);
  for (let i = 0; i < 16; i++) names.set(147 + i, `USER${i}`);
  return names;
}

/** "LINKTYPE_PPP (9)" for a known link type, "LINKTYPE 1234" otherwise. */
export function describeLinkType(linkType: number): string {
  const name = LINKTYPE_NAMES.get(linkType);
  return name === undefined ? `LINKTYPE ${linkType}` : `LINKTYPE_${name} (${linkType})`;
}

/** Maps the DLT_RAW values found in old files (12, 14) to LinkType.RAW; others unchanged. */
export function normalizeLinkType(linkType: number): number {
  return linkType === 12 || linkType === 14 ? LinkType.RAW : linkType;
}

/** True for the (normalized) link types the gateway parses. */
export function isSupportedLinkType(linkType: number): boolean {
  switch (linkType) {
    case LinkType.ETHERNET:
    case LinkType.RAW:
    case LinkType.LINUX_SLL:
    case LinkType.IPV4:
    case LinkType.IPV6:
    case LinkType.LINUX_SLL2:
      return true;
    default:
      return false;
  }
}

const SUPPORTED_SUMMARY = "supported: Ethernet, raw IPv4/IPv6, Linux cooked v1/v2";

// ---- reader -------------------------------------------------------------------------------

export type CaptureFormat = "pcap" | "pcapng";

/**
 * A cursor over the frames of one capture. Call next() until it returns false; after each
 * true, the fields describe the current frame. Then check `error`.
 */
export class CaptureReader {
  readonly ok = true;
  readonly name: string;
  readonly format: CaptureFormat;
  /** The whole file, as handed to openCapture; frames are ranges of it (not copied). */
  readonly data: Uint8Array;

  /** Current frame: first byte in `data`, bytes present, and length on the wire. */
  offset = 0;
  capturedLength = 0;
  originalLength = 0;
  /** LinkType of the current frame (always supported; 12/14 normalized to RAW). */
  linkType = 0;
  /** Capture time in milliseconds since the Unix epoch, sub-millisecond in the fraction. */
  timestampMs = 0;
  /** 0-based index of the current frame among delivered frames; -1 before the first. */
  frameIndex = -1;
  /** pcapng interface (within its section) of the current frame; 0 for pcap. */
  interfaceIndex = 0;

  /** Set once next() has returned false: null when the file ended cleanly. */
  error: CaptureError | null = null;
  /** pcapng packets skipped because their interface's link type is unsupported. */
  skippedUnsupported = 0;
  /** The unsupported link types those skipped packets had. */
  readonly unsupportedLinkTypes = new Set<number>();

  private readonly view: DataView;
  private littleEndian: boolean;
  private position: number;
  private done = false;
  // pcap only: the nanosecond variant's fraction unit.
  private readonly fractionMsPerUnit: number;
  // pcapng only: the current section's interfaces, indexed by interface id.
  private readonly ifLinkType: number[] = [];
  private readonly ifSnapLength: number[] = [];
  private readonly ifUnitsPerSecond: number[] = [];
  private readonly ifOffsetMs: number[] = [];

  /** Use openCapture; the constructor trusts its arguments. */
  constructor(
    name: string,
    format: CaptureFormat,
    data: Uint8Array,
    littleEndian: boolean,
    linkType: number,
    nanosecond: boolean,
  ) {
    this.name = name;
    this.format = format;
    this.data = data;
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    this.littleEndian = littleEndian;
    this.linkType = linkType;
    this.fractionMsPerUnit = nanosecond ? 1e-6 : 1e-3;
    this.position = format === "pcap" ? PCAP_FILE_HEADER_LENGTH : 0;
  }

  /** Frames delivered so far. */
  get frameCount(): number {
    return this.frameIndex + 1;
  }

  /** Advances to the next frame. False at the end of the file or at the first bad record. */
  next(): boolean {
    if (this.done) return false;
    return this.format === "pcap" ? this.nextPcap() : this.nextPcapng();
  }

  /**
   * For pcapng: an error when the file held packets but every one was on an interface with an
   * unsupported link type (so replaying it would silently do nothing). Null otherwise.
   * Meaningful after reading has finished.
   */
  unsupportedOnlyError(): CaptureError | null {
    if (this.frameCount > 0 || this.skippedUnsupported === 0) return null;
    const types = [...this.unsupportedLinkTypes].sort((a, b) => a - b).map(describeLinkType).join(", ");
    return captureError(
      ErrorCode.CAPTURE_LINKTYPE_UNSUPPORTED,
      `${this.name}: all ${this.skippedUnsupported} packets use unsupported link type ${types} (${SUPPORTED_SUMMARY})`,
    );
  }

  private finish(error: CaptureError | null): false {
    this.done = true;
    this.error = error;
    return false;
  }

  private fail(message: string): false {
    return this.finish(captureError(ErrorCode.CAPTURE_UNREADABLE, `${this.name}: ${message}`));
  }

  private u32(at: number): number {
    return this.view.getUint32(at, this.littleEndian);
  }

  private nextPcap(): boolean {
    const pos = this.position;
    const remaining = this.data.length - pos;
    if (remaining === 0) return this.finish(null);
    const record = this.frameCount;
    if (remaining < PCAP_RECORD_HEADER_LENGTH) {
      return this.fail(`truncated record ${record} at offset ${pos}: header needs 16 bytes, ${remaining} remain`);
    }
    const capturedLength = this.u32(pos + 8);
    if (capturedLength > CAPTURED_LENGTH_MAX) {
      return this.fail(
        `corrupt record ${record} at offset ${pos}: captured length ${capturedLength} exceeds ${CAPTURED_LENGTH_MAX}`,
      );
    }
    if (remaining - PCAP_RECORD_HEADER_LENGTH < capturedLength) {
      return this.fail(
        `truncated record ${record} at offset ${pos}: captured length ${capturedLength}, ` +
          `${remaining - PCAP_RECORD_HEADER_LENGTH} bytes remain`,
      );
    }
    this.timestampMs = this.u32(pos) * 1000 + this.u32(pos + 4) * this.fractionMsPerUnit;
    this.originalLength = this.u32(pos + 12);
    this.capturedLength = capturedLength;
    this.offset = pos + PCAP_RECORD_HEADER_LENGTH;
    this.frameIndex++;
    this.position = this.offset + capturedLength;
    return true;
  }

  private nextPcapng(): boolean {
    // Each pass consumes one whole block (>= 12 bytes) or ends reading, so the loop is bounded
    // by data.length / 12.
    for (;;) {
      const pos = this.position;
      const remaining = this.data.length - pos;
      if (remaining === 0) return this.finish(null);
      if (remaining < PCAPNG_BLOCK_MIN_LENGTH) {
        return this.fail(`truncated block at offset ${pos}: ${remaining} bytes remain, a block needs at least 12`);
      }
      // The section header's type reads the same in both byte orders; its byte-order magic
      // sets the order for the whole section, including its own length field.
      const blockType = this.u32(pos);
      if (blockType === PCAPNG_SHB_TYPE) {
        const magic = this.view.getUint32(pos + 8, true);
        if (magic === PCAPNG_BYTE_ORDER_MAGIC) this.littleEndian = true;
        else if (this.view.getUint32(pos + 8, false) === PCAPNG_BYTE_ORDER_MAGIC) this.littleEndian = false;
        else return this.fail(`corrupt section header at offset ${pos}: bad byte-order magic 0x${hex32(magic)}`);
      }
      const blockLength = this.u32(pos + 4);
      if (blockLength < PCAPNG_BLOCK_MIN_LENGTH || blockLength % 4 !== 0) {
        return this.fail(`corrupt block at offset ${pos}: total length ${blockLength} (must be >= 12 and a multiple of 4)`);
      }
      if (blockLength > remaining) {
        return this.fail(`truncated block at offset ${pos}: total length ${blockLength}, ${remaining} bytes remain`);
      }
      if (this.u32(pos + blockLength - 4) !== blockLength) {
        return this.fail(
          `corrupt block at offset ${pos}: trailing total length ${this.u32(pos + blockLength - 4)} ` +
            `differs from leading ${blockLength}`,
        );
      }
      this.position = pos + blockLength;
      switch (blockType) {
        case PCAPNG_SHB_TYPE:
          if (!this.readSectionHeader(pos, blockLength)) return false;
          break;
        case BLOCK_INTERFACE:
          if (!this.readInterface(pos, blockLength)) return false;
          break;
        case BLOCK_ENHANCED_PACKET:
        case BLOCK_PACKET_OBSOLETE: {
          const delivered = this.readTimestampedPacket(pos, blockLength, blockType === BLOCK_ENHANCED_PACKET);
          if (delivered !== 0) return delivered > 0;
          break;
        }
        case BLOCK_SIMPLE_PACKET: {
          const delivered = this.readSimplePacket(pos, blockLength);
          if (delivered !== 0) return delivered > 0;
          break;
        }
        default:
          // Name resolution, statistics, decryption secrets, custom blocks: not needed to replay.
          break;
      }
    }
  }

  private readSectionHeader(pos: number, blockLength: number): boolean {
    if (blockLength < PCAPNG_SHB_MIN_LENGTH) {
      return this.fail(`corrupt section header at offset ${pos}: total length ${blockLength} < ${PCAPNG_SHB_MIN_LENGTH}`);
    }
    const major = this.view.getUint16(pos + 12, this.littleEndian);
    if (major !== 1) return this.fail(`unsupported pcapng major version ${major} at offset ${pos}`);
    // Interface ids are per section: a new section starts with none.
    this.ifLinkType.length = 0;
    this.ifSnapLength.length = 0;
    this.ifUnitsPerSecond.length = 0;
    this.ifOffsetMs.length = 0;
    return true;
  }

  private readInterface(pos: number, blockLength: number): boolean {
    if (blockLength < 20) return this.fail(`corrupt interface block at offset ${pos}: total length ${blockLength} < 20`);
    if (this.ifLinkType.length >= PCAPNG_INTERFACES_MAX) {
      return this.fail(`corrupt file: more than ${PCAPNG_INTERFACES_MAX} interfaces in one section (offset ${pos})`);
    }
    const linkType = normalizeLinkType(this.view.getUint16(pos + 8, this.littleEndian));
    const snapLength = this.u32(pos + 12);
    let unitsPerSecond = 1e6;
    let offsetMs = 0;
    const optionsEnd = pos + blockLength - 4;
    let at = pos + 16;
    // Each option advances `at` by at least 4, so this loop is bounded by the block length.
    while (optionsEnd - at >= 4) {
      const code = this.view.getUint16(at, this.littleEndian);
      const length = this.view.getUint16(at + 2, this.littleEndian);
      if (code === OPTION_END) break;
      const padded = (length + 3) & ~3;
      if (at + 4 + padded > optionsEnd) {
        return this.fail(`corrupt interface block at offset ${pos}: option ${code} runs past the block end`);
      }
      if (code === OPTION_IF_TSRESOL && length >= 1) {
        const resolution = this.data[at + 4];
        // High bit set: a negative power of two; clear: a negative power of ten.
        unitsPerSecond = resolution & 0x80 ? 2 ** (resolution & 0x7f) : 10 ** resolution;
      } else if (code === OPTION_IF_TSOFFSET && length === 8) {
        const high = this.view.getInt32(this.littleEndian ? at + 8 : at + 4, this.littleEndian);
        const low = this.view.getUint32(this.littleEndian ? at + 4 : at + 8, this.littleEndian);
        offsetMs = (high * TWO_POW_32 + low) * 1000;
      }
      at += 4 + padded;
    }
    this.ifLinkType.push(linkType);
    this.ifSnapLength.push(snapLength);
    this.ifUnitsPerSecond.push(unitsPerSecond);
    this.ifOffsetMs.push(offsetMs);
    return true;
  }

  /** EPB or obsolete PB. Returns 1 when a frame was delivered, 0 to go on, -1 on error. */
  private readTimestampedPacket(pos: number, blockLength: number, enhanced: boolean): number {
    const kind = enhanced ? "enhanced packet block" : "packet block";
    if (blockLength < 32) return this.failed(`corrupt ${kind} at offset ${pos}: total length ${blockLength} < 32`);
    const interfaceId = enhanced ? this.u32(pos + 8) : this.view.getUint16(pos + 8, this.littleEndian);
    if (interfaceId >= this.ifLinkType.length) {
      return this.failed(`corrupt ${kind} at offset ${pos}: interface ${interfaceId} was not described`);
    }
    const capturedLength = this.u32(pos + 20);
    if (capturedLength > CAPTURED_LENGTH_MAX) {
      return this.failed(`corrupt ${kind} at offset ${pos}: captured length ${capturedLength} exceeds ${CAPTURED_LENGTH_MAX}`);
    }
    if (capturedLength > blockLength - 32) {
      return this.failed(
        `corrupt ${kind} at offset ${pos}: captured length ${capturedLength} does not fit its ${blockLength}-byte block`,
      );
    }
    const linkType = this.ifLinkType[interfaceId];
    if (!isSupportedLinkType(linkType)) return this.skipUnsupported(linkType);
    const high = this.u32(pos + 12);
    const low = this.u32(pos + 16);
    this.timestampMs = unitsToMs(high, low, this.ifUnitsPerSecond[interfaceId]) + this.ifOffsetMs[interfaceId];
    this.deliver(pos + 28, capturedLength, this.u32(pos + 24), linkType, interfaceId);
    return 1;
  }

  /** SPB: no timestamp (keeps the previous frame's) and interface 0. Same returns as above. */
  private readSimplePacket(pos: number, blockLength: number): number {
    if (blockLength < 16) return this.failed(`corrupt simple packet block at offset ${pos}: total length ${blockLength} < 16`);
    if (this.ifLinkType.length === 0) {
      return this.failed(`corrupt simple packet block at offset ${pos}: no interface was described`);
    }
    const originalLength = this.u32(pos + 8);
    // The captured length is implicit: the original length cut at the snap length and at the
    // block (which also holds up to 3 bytes of padding).
    let capturedLength = Math.min(originalLength, blockLength - 16);
    const snapLength = this.ifSnapLength[0];
    if (snapLength > 0 && snapLength < capturedLength) capturedLength = snapLength;
    if (capturedLength > CAPTURED_LENGTH_MAX) {
      return this.failed(
        `corrupt simple packet block at offset ${pos}: captured length ${capturedLength} exceeds ${CAPTURED_LENGTH_MAX}`,
      );
    }
    const linkType = this.ifLinkType[0];
    if (!isSupportedLinkType(linkType)) return this.skipUnsupported(linkType);
    this.deliver(pos + 12, capturedLength, originalLength, linkType, 0);
    return 1;
  }

  private failed(message: string): number {
    this.fail(message);
    return -1;
  }

  private skipUnsupported(linkType: number): number {
    this.skippedUnsupported++;
    this.unsupportedLinkTypes.add(linkType);
    return 0;
  }

  private deliver(offset: number, capturedLength: number, originalLength: number, linkType: number, interfaceIndex: number): void {
    this.offset = offset;
    this.capturedLength = capturedLength;
    this.originalLength = originalLength;
    this.linkType = linkType;
    this.interfaceIndex = interfaceIndex;
    this.frameIndex++;
  }
}

/**
 * Converts a 64-bit timestamp (high, low 32-bit halves) in units of 1/unitsPerSecond to
 * milliseconds. The whole-second part is computed exactly (a ns count since 1970 is past
 * 2^53, so the plain product would lose microseconds); only the final sum is rounded.
 */
function unitsToMs(high: number, low: number, unitsPerSecond: number): number {
  if (!(unitsPerSecond <= TWO_POW_32 && Number.isInteger(unitsPerSecond))) {
    return (high * TWO_POW_32 + low) * (1000 / unitsPerSecond);
  }
  // Long division of (high * 2^32 + low) by d in 16-bit steps: every intermediate < 2^48.
  const d = unitsPerSecond;
  const qHigh = Math.floor(high / d);
  const rHigh = high - qHigh * d;
  const x = rHigh * 65536 + (low >>> 16);
  const qMid = Math.floor(x / d);
  const rMid = x - qMid * d;
  const y = rMid * 65536 + (low & 0xffff);
  const qLow = Math.floor(y / d);
  const remainder = y - qLow * d;
  const seconds = qHigh * TWO_POW_32 + qMid * 65536 + qLow;
  return seconds * 1000 + (remainder * 1000) / d;
}

function hex32(value: number): string {
  return (value >>> 0).toString(16).padStart(8, "0");
}

/**
 * Opens a capture held in memory. Returns a reader, or a CaptureError when the bytes are not
 * a capture (CAPTURE_UNREADABLE) or a pcap file's link type is unsupported
 * (CAPTURE_LINKTYPE_UNSUPPORTED). `name` (usually the path) prefixes every message.
 */
export function openCapture(bytes: Uint8Array, name: string): CaptureReader | CaptureError {
  if (bytes.length < 4) {
    return captureError(ErrorCode.CAPTURE_UNREADABLE, `${name}: not a pcap or pcapng file: only ${bytes.length} bytes`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magicBig = view.getUint32(0, false);
  const magicLittle = view.getUint32(0, true);
  if (magicBig === PCAPNG_SHB_TYPE) {
    if (bytes.length < PCAPNG_BLOCK_MIN_LENGTH) {
      return captureError(
        ErrorCode.CAPTURE_UNREADABLE,
        `${name}: truncated pcapng section header (${bytes.length} of at least ${PCAPNG_SHB_MIN_LENGTH} bytes)`,
      );
    }
    // Byte order is checked (and the section parsed) by the reader's first next().
    return new CaptureReader(name, "pcapng", bytes, true, 0, false);
  }
  let littleEndian: boolean;
  let nanosecond: boolean;
  if (magicLittle === MAGIC_PCAP_US || magicLittle === MAGIC_PCAP_NS) {
    littleEndian = true;
    nanosecond = magicLittle === MAGIC_PCAP_NS;
  } else if (magicBig === MAGIC_PCAP_US || magicBig === MAGIC_PCAP_NS) {
    littleEndian = false;
    nanosecond = magicBig === MAGIC_PCAP_NS;
  } else {
    return captureError(ErrorCode.CAPTURE_UNREADABLE, `${name}: not a pcap or pcapng file: magic 0x${hex32(magicBig)}`);
  }
  if (bytes.length < PCAP_FILE_HEADER_LENGTH) {
    return captureError(
      ErrorCode.CAPTURE_UNREADABLE,
      `${name}: truncated pcap file header (${bytes.length} of ${PCAP_FILE_HEADER_LENGTH} bytes)`,
    );
  }
  // The upper 16 bits of the link type field carry FCS-length flags; like libpcap, the link
  // type proper is the low 16 bits.
  const linkType = normalizeLinkType(view.getUint32(20, littleEndian) & 0xffff);
  if (!isSupportedLinkType(linkType)) {
    return captureError(
      ErrorCode.CAPTURE_LINKTYPE_UNSUPPORTED,
      `${name}: unsupported link type ${describeLinkType(linkType)} (${SUPPORTED_SUMMARY})`,
    );
  }
  return new CaptureReader(name, "pcap", bytes, littleEndian, linkType, nanosecond);
}

// ---- writer -------------------------------------------------------------------------------

/**
 * Builds a microsecond, little-endian pcap file in memory. Frames longer than the snap length
 * are cut to it (their original length is kept), as a capture tool would.
 */
export class PcapWriter {
  readonly linkType: number;
  readonly snapLength: number;
  frameCount = 0;
  private buffer: Uint8Array;
  private view: DataView;
  private length = 0;

  constructor(linkType: number, snapLength = CAPTURED_LENGTH_MAX) {
    assert(Number.isInteger(linkType) && linkType >= 0 && linkType <= 0xffff, `bad link type ${linkType}`);
    assert(Number.isInteger(snapLength) && snapLength > 0 && snapLength <= CAPTURED_LENGTH_MAX, `bad snap length ${snapLength}`);
    this.linkType = linkType;
    this.snapLength = snapLength;
    this.buffer = new Uint8Array(65536);
    this.view = new DataView(this.buffer.buffer);
    this.view.setUint32(0, MAGIC_PCAP_US, true);
    this.view.setUint16(4, 2, true); // version 2.4
    this.view.setUint16(6, 4, true);
    this.view.setInt32(8, 0, true); // thiszone: timestamps are UTC
    this.view.setUint32(12, 0, true); // sigfigs
    this.view.setUint32(16, snapLength, true);
    this.view.setUint32(20, linkType, true);
    this.length = PCAP_FILE_HEADER_LENGTH;
  }

  /** Appends one frame (copied). timestampMs: ms since the Unix epoch, kept to the microsecond. */
  writeFrame(frame: Uint8Array, timestampMs: number, originalLength = frame.length): void {
    assert(Number.isFinite(timestampMs) && timestampMs >= 0, `bad timestamp ${timestampMs}`);
    assert(Number.isInteger(originalLength) && originalLength >= frame.length && originalLength <= 0xffffffff, `bad original length ${originalLength}`);
    let seconds = Math.floor(timestampMs / 1000);
    let micros = Math.round((timestampMs - seconds * 1000) * 1000);
    if (micros >= 1_000_000) {
      seconds++;
      micros -= 1_000_000;
    }
    assert(seconds <= 0xffffffff, `timestamp ${timestampMs} is past the pcap range (year 2106)`);
    const capturedLength = Math.min(frame.length, this.snapLength);
    this.reserve(PCAP_RECORD_HEADER_LENGTH + capturedLength);
    const at = this.length;
    this.view.setUint32(at, seconds, true);
    this.view.setUint32(at + 4, micros, true);
    this.view.setUint32(at + 8, capturedLength, true);
    this.view.setUint32(at + 12, originalLength, true);
    this.buffer.set(frame.subarray(0, capturedLength), at + PCAP_RECORD_HEADER_LENGTH);
    this.length = at + PCAP_RECORD_HEADER_LENGTH + capturedLength;
    this.frameCount++;
  }

  /** The file so far (a copy: the writer can go on appending). */
  toBytes(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }

  private reserve(extra: number): void {
    const needed = this.length + extra;
    if (needed <= this.buffer.length) return;
    let capacity = this.buffer.length * 2;
    while (capacity < needed) capacity *= 2;
    const grown = new Uint8Array(capacity);
    grown.set(this.buffer.subarray(0, this.length));
    this.buffer = grown;
    this.view = new DataView(grown.buffer);
  }
}
