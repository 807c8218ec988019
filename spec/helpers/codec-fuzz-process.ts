// Forked by spec/55.codecs.spec.ts: decodes random and mutated bytes with the ready
// codecs, and reports how each attempt ended. A separate process, so that a decoder that
// aborted or crashed would fail the spec with a signal instead of killing mocha.
import * as v8 from 'node:v8';

import { decodeWith } from '../../lib/codecs';
import { codecs, isShmChannelError, type Codec } from '../../lib/index';
import { seededRandom } from './segment-layout';

export interface FuzzReport {
  attempts: number;
  decoded: number;
  codecErrors: number;
  /** Failures that were not ERR_CODEC (must be none), with the seed and round to replay them. */
  otherErrors: { codec: string; round: number; message: string }[];
}

// Valid encodings to mutate, so the fuzz gets past the format's header into its structure.
const SAMPLES: unknown[] = [
  { a: [1, 2, { b: 'c' }], d: null, e: true },
  new Map<unknown, unknown>([
    ['k', new Date(0)],
    [1, new Set([1n, 'x'])],
  ]),
  [new Uint8Array([1, 2, 3]), new Float64Array([0.5]), Buffer.from('buf'), new Uint16Array(4)],
  'a string with ünïcödé',
  Object.assign([1, , 3], { 1000: 'sparse' }), // eslint-disable-line no-sparse-arrays
  { re: /x+/gi, err: new RangeError('r'), n: -0, big: 2n ** 70n, nested: { deeper: { deepest: [[[]]] } } },
];

function mutate(base: Buffer, random: () => number): Buffer {
  const out = Buffer.from(base);
  const edits = 1 + Math.floor(random() * 4);
  let bytes = out;
  for (let i = 0; i < edits; i++) {
    const at = Math.floor(random() * bytes.length);
    switch (Math.floor(random() * 4)) {
      case 0:
        bytes[at] = Math.floor(random() * 256);
        break;
      case 1:
        bytes[at] = 0xff; // a huge varint byte, a type tag, a header
        break;
      case 2:
        bytes = bytes.subarray(0, at); // truncated
        break;
      case 3:
        bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from([Math.floor(random() * 256)]), bytes.subarray(at)]);
        break;
    }
    if (bytes.length === 0) break;
  }
  return bytes;
}

function main(): void {
  const seed = Number(process.argv[2]);
  const rounds = Number(process.argv[3]);
  const random = seededRandom(seed);
  const report: FuzzReport = { attempts: 0, decoded: 0, codecErrors: 0, otherErrors: [] };
  const targets: [string, Codec<unknown>, Buffer[]][] = [
    ['structuredClone', codecs.structuredClone, SAMPLES.map((s) => v8.serialize(s))],
    ['json', codecs.json, SAMPLES.slice(0, 1).map((s) => Buffer.from(JSON.stringify(s)))],
    ['utf8', codecs.utf8 as Codec<unknown>, [Buffer.from(SAMPLES[3] as string)]],
  ];
  for (let round = 0; round < rounds; round++) {
    for (const [name, codec, samples] of targets) {
      const data =
        round % 2 === 0
          ? Buffer.from(Array.from({ length: Math.floor(random() * 64) }, () => Math.floor(random() * 256)))
          : mutate(samples[Math.floor(random() * samples.length)], random);
      report.attempts++;
      try {
        // decodeWith is what TypedChannel runs on every incoming message.
        decodeWith(codec, data, 'fuzz input');
        report.decoded++;
      } catch (err) {
        if (isShmChannelError(err, 'ERR_CODEC')) report.codecErrors++;
        else report.otherErrors.push({ codec: name, round, message: String(err) });
      }
    }
  }
  process.send?.(report);
}

main();
