/**
 * Training checkpoints: one file holding parameters, optimizer state and the step, written
 * atomically, so a crash at any moment leaves either the previous or the new checkpoint.
 *
 * Layout: "PSCKPT01" | uint32 LE header length | header JSON | payload (params blob, then
 * optimizer blob). The header carries the payload's sha256 and its own (over its other fields).
 */
import { existsSync } from 'node:fs';
import { ProbsemError } from '../core/errors.js';
import { canonicalJson, RegularFile, sha256, writeFileAtomicSync } from '../core/files.js';
import { type TensorEntry, validateManifest } from '../nn/params.js';
import type { LrSchedule } from './schedule.js';

const MAGIC = 'PSCKPT01';
/** The header is a few kilobytes of JSON (two manifests); far more is a damaged length field. */
const MAX_HEADER_BYTES = 64 * 2 ** 20;

export interface CheckpointHeader {
  step: number;
  model: string;
  config: unknown;
  seed: number;
  batchSize: number;
  lr: number;
  /** Data-parallel replicas the run used (results depend on it). */
  replicas?: number;
  /** Learning-rate schedule and the step count it spans (absent in older checkpoints: constant). */
  lrSchedule?: LrSchedule;
  scheduleSteps?: number;
  params: TensorEntry[];
  paramsBytes: number;
  optimizer: { t: number; tensors: TensorEntry[]; bytes: number };
  payloadSha256: string;
  /** SHA-256 of the canonical JSON of the rest of the header (absent in older checkpoints). */
  headerSha256?: string;
}

export interface Checkpoint {
  header: CheckpointHeader;
  params: Uint8Array;
  optimizer: Uint8Array;
}

export function writeCheckpoint(path: string, header: Omit<CheckpointHeader, 'payloadSha256' | 'paramsBytes'>, params: Uint8Array, optimizer: Uint8Array): void {
  const payload = Buffer.concat([params, optimizer]);
  // A header read back from a checkpoint carries its old checksums: recompute, never copy them.
  const { headerSha256: _h, payloadSha256: _p, paramsBytes: _b, ...rest } = header as Partial<CheckpointHeader>;
  const full = { ...rest, paramsBytes: params.byteLength, payloadSha256: sha256(payload) } as CheckpointHeader;
  full.headerSha256 = headerChecksum(full);
  const json = Buffer.from(JSON.stringify(full), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length, 0);
  writeFileAtomicSync(path, Buffer.concat([Buffer.from(MAGIC, 'latin1'), len, json, payload]));
}

function headerChecksum(h: CheckpointHeader): string {
  const { headerSha256: _, ...fields } = h;
  return sha256(canonicalJson(JSON.parse(JSON.stringify(fields))));
}

/**
 * Reads and verifies a checkpoint. Only a regular file is opened, and no more is read than its
 * header declares (plus one byte, to tell a longer file), so a FIFO, a device or a hostile header
 * cannot hang probsem or make it allocate without bound.
 */
export function readCheckpoint(path: string): Checkpoint {
  if (!existsSync(path)) throw new ProbsemError(`checkpoint ${path} not found`, 'NOT_FOUND');
  const f = RegularFile.open(path, 'checkpoint', 'MODEL_FORMAT');
  try {
    return readOpened(f, path);
  } finally {
    f.close();
  }
}

function readOpened(f: RegularFile, path: string): Checkpoint {
  const bad = (why: string) => new ProbsemError(`checkpoint ${path} is unreadable: ${why}`, 'MODEL_FORMAT');
  const head = f.read(0, 12);
  if (head.length < 12 || head.toString('latin1', 0, 8) !== MAGIC) throw bad('wrong magic bytes');
  const hlen = head.readUInt32LE(8);
  if (12 + hlen > f.size) throw bad('header runs past the end of the file');
  if (hlen > MAX_HEADER_BYTES) throw bad(`header of ${hlen} bytes is implausibly large`);
  let header: CheckpointHeader;
  try {
    header = JSON.parse(f.read(12, hlen).toString('utf8')) as CheckpointHeader;
  } catch {
    throw bad('header is not valid JSON');
  }
  const h = header as Partial<CheckpointHeader> | null;
  const nat = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;
  if (
    !h || typeof h !== 'object' || !Number.isInteger(h.step) || typeof h.model !== 'string' || !Array.isArray(h.params) ||
    !h.optimizer || !Array.isArray(h.optimizer.tensors) || !nat(h.optimizer.bytes) || !nat(h.paramsBytes) || typeof h.payloadSha256 !== 'string'
  ) {
    throw bad('header lacks required fields');
  }
  // Older checkpoints have no header checksum; their payload checksum still holds.
  if (h.headerSha256 !== undefined) {
    let want: string;
    try {
      want = headerChecksum(header);
    } catch (e) {
      throw bad(`header cannot be checked (${(e as Error).message})`); // e.g. nesting deep enough to overflow the stack
    }
    if (h.headerSha256 !== want) throw bad('header checksum mismatch (edited or corrupted)');
  }
  const payloadBytes = header.paramsBytes + header.optimizer.bytes;
  if (f.size !== 12 + hlen + payloadBytes) throw bad(`payload has the wrong length (${f.size - 12 - hlen} bytes, the header says ${payloadBytes}; truncated?)`);
  const payload = f.read(12 + hlen, payloadBytes + 1);
  if (payload.length !== payloadBytes) throw bad('payload has the wrong length (the file changed while being read)');
  if (sha256(payload) !== header.payloadSha256) throw bad('payload checksum mismatch');
  validateManifest(header.params, path, header.paramsBytes / 4);
  validateManifest(header.optimizer.tensors, path, header.optimizer.bytes / 4);
  return {
    header,
    params: new Uint8Array(payload.subarray(0, header.paramsBytes)),
    optimizer: new Uint8Array(payload.subarray(header.paramsBytes)),
  };
}
