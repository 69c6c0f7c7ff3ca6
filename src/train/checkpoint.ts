/**
 * Training checkpoints: one file holding parameters, optimizer state and the step, written
 * atomically, so a crash at any moment leaves either the previous or the new checkpoint.
 *
 * Layout: "PSCKPT01" | uint32 LE header length | header JSON | payload (params blob, then
 * optimizer blob). The header carries the payload's sha256.
 */
import { existsSync, readFileSync } from 'node:fs';
import { ProbsemError } from '../core/errors.js';
import { sha256, writeFileAtomicSync } from '../core/files.js';
import type { TensorEntry } from '../nn/params.js';
import type { LrSchedule } from './schedule.js';

const MAGIC = 'PSCKPT01';

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
}

export interface Checkpoint {
  header: CheckpointHeader;
  params: Uint8Array;
  optimizer: Uint8Array;
}

export function writeCheckpoint(path: string, header: Omit<CheckpointHeader, 'payloadSha256' | 'paramsBytes'>, params: Uint8Array, optimizer: Uint8Array): void {
  const payload = Buffer.concat([params, optimizer]);
  const full: CheckpointHeader = { ...header, paramsBytes: params.byteLength, payloadSha256: sha256(payload) };
  const json = Buffer.from(JSON.stringify(full), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length, 0);
  writeFileAtomicSync(path, Buffer.concat([Buffer.from(MAGIC, 'latin1'), len, json, payload]));
}

export function readCheckpoint(path: string): Checkpoint {
  if (!existsSync(path)) throw new ProbsemError(`checkpoint ${path} not found`, 'NOT_FOUND');
  const buf = readFileSync(path);
  const bad = (why: string) => new ProbsemError(`checkpoint ${path} is unreadable: ${why}`, 'MODEL_FORMAT');
  if (buf.length < 12 || buf.toString('latin1', 0, 8) !== MAGIC) throw bad('wrong magic bytes');
  const hlen = buf.readUInt32LE(8);
  if (12 + hlen > buf.length) throw bad('header runs past the end of the file');
  let header: CheckpointHeader;
  try {
    header = JSON.parse(buf.toString('utf8', 12, 12 + hlen)) as CheckpointHeader;
  } catch {
    throw bad('header is not valid JSON');
  }
  const h = header as Partial<CheckpointHeader> | null;
  if (
    !h || typeof h !== 'object' || !Number.isInteger(h.step) || typeof h.model !== 'string' || !Array.isArray(h.params) ||
    !h.optimizer || !Array.isArray(h.optimizer.tensors) || !Number.isInteger(h.optimizer.bytes) || !Number.isInteger(h.paramsBytes)
  ) {
    throw bad('header lacks required fields');
  }
  const payload = buf.subarray(12 + hlen);
  if (payload.length !== header.paramsBytes + header.optimizer.bytes) throw bad('payload has the wrong length (truncated?)');
  if (sha256(payload) !== header.payloadSha256) throw bad('payload checksum mismatch');
  return {
    header,
    params: new Uint8Array(payload.subarray(0, header.paramsBytes)),
    optimizer: new Uint8Array(payload.subarray(header.paramsBytes)),
  };
}
