// The numbers TypeScript copies from the native definitions, and the check, run when the addon
// is loaded, that the addon in hand was built from the same ones.
import type { NativeConstants } from './native';
import { DEFAULT_MAX_CLIENTS, MAX_CLIENTS, PeerState, SegmentKind, SegmentState, SlotPhase, WakeEvent } from './native';
import {
  FRAME_HEADER_SIZE,
  FrameFlag,
  FrameKind,
  MAX_MESSAGE_SIZE,
  MAX_POOL_CAPACITY,
  MAX_RING_CAPACITY,
  MIN_RING_CAPACITY,
  POOL_BLOCK_SIZE,
  PROTOCOL_VERSION,
} from './protocol';

/**
 * Every constant that has a native twin, under the name the addon exports its twin by (its
 * `constants`, native/binding/addon.cc). A constant added to either side without the other makes
 * the load fail, and spec 11 fails for a numeric export of protocol.ts or native.ts that is
 * neither here nor declared TypeScript's own.
 */
export const SHARED_CONSTANTS: NativeConstants = {
  PROTOCOL_VERSION,
  FRAME_HEADER_SIZE,
  MIN_RING_CAPACITY,
  MAX_RING_CAPACITY,
  MAX_MESSAGE_SIZE,
  POOL_BLOCK_SIZE,
  MAX_POOL_CAPACITY,
  MAX_CLIENTS,
  DEFAULT_MAX_CLIENTS,
  FrameFlag,
  FrameKind,
  SegmentState,
  SegmentKind,
  SlotPhase,
  PeerState,
  WakeEvent,
};

/**
 * How the addon's `constants` differ from SHARED_CONSTANTS, one line per constant that is
 * missing, extra or unequal on either side, e.g. `FrameKind.HELLO is 9 in the addon, 1 here`.
 * Empty when they agree.
 */
export function constantMismatches(native: unknown, expected: NativeConstants = SHARED_CONSTANTS): string[] {
  const ours = flatten(expected);
  const theirs = flatten(native);
  const mismatches: string[] = [];
  for (const [name, value] of ours) {
    if (!theirs.has(name)) mismatches.push(`${name} is missing in the addon, ${value} here`);
    else if (theirs.get(name) !== value)
      mismatches.push(`${name} is ${show(theirs.get(name))} in the addon, ${value} here`);
  }
  for (const [name, value] of theirs) {
    if (!ours.has(name)) mismatches.push(`${name} is ${show(value)} in the addon, missing here`);
  }
  return mismatches;
}

/** Every leaf of a tree of named values by its dotted path (`FrameKind.HELLO`). */
function flatten(tree: unknown, prefix = '', into = new Map<string, unknown>()): Map<string, unknown> {
  if (tree === null || typeof tree !== 'object') return into;
  for (const [key, value] of Object.entries(tree)) {
    const name = prefix + key;
    if (value !== null && typeof value === 'object') flatten(value, `${name}.`, into);
    else into.set(name, value);
  }
  return into;
}

function show(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}
