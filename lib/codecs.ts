import { Buffer } from 'node:buffer';
import * as v8 from 'node:v8';

import { describeType, toBuffer, type Data } from './data';
import { createError, isShmChannelError, type ShmChannelError } from './errors';

/**
 * Turns values of type `T` into message bytes and back. Both ends of a channel must use the
 * same codec for a given kind of message. A codec may throw from `encode` or `decode` for
 * a value or bytes it cannot handle; {@link TypedChannel} turns that into an `ERR_CODEC`
 * error, never an uncaught exception.
 *
 * ## Example
 * ```ts
 * const point: Codec<{ x: number; y: number }> = {
 *   name: 'point',
 *   encode: ({ x, y }) => { const b = Buffer.alloc(16); b.writeDoubleLE(x, 0); b.writeDoubleLE(y, 8); return b; },
 *   decode: (data) => ({ x: data.readDoubleLE(0), y: data.readDoubleLE(8) }),
 * };
 * ```
 */
export interface Codec<T> {
  /** Named in `ERR_CODEC` messages, e.g. `'json'`. */
  readonly name: string;
  encode(value: T): Data;
  /** `data` is a Buffer the receiver owns: a codec may return it, or views of it, as is. */
  decode(data: Buffer): T;
}

/** The ready codecs encode into Buffers of their own. */
type BufferCodec<T> = Omit<Codec<T>, 'encode'> & { encode(value: T): Buffer };

/** A value `JSON.parse` can return. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

// Lone surrogates would silently become U+FFFD in UTF-8: refuse them instead, like the decoder.
const LONE_SURROGATE = /\p{Cs}/u;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function encodeUtf8(value: string, codec: string): Buffer {
  if (typeof value !== 'string') throw new TypeError(`${codec} encodes strings, got ${describeType(value)}`);
  if (LONE_SURROGATE.test(value)) throw new TypeError('the string holds a lone UTF-16 surrogate');
  return Buffer.from(value, 'utf8');
}

const raw: BufferCodec<Buffer> = {
  name: 'raw',
  encode(value) {
    // Any bytes (a typed array, a DataView, an ArrayBuffer) as they are; text needs a text codec.
    if (typeof value === 'string') throw new TypeError(`raw encodes bytes, not strings: use the utf8 codec`);
    return toBuffer(value, 'raw value');
  },
  decode: (data) => data,
};

const utf8: BufferCodec<string> = {
  name: 'utf8',
  encode: (value) => encodeUtf8(value, 'utf8'),
  // Strict: bytes that are not UTF-8 are a codec error, not text with U+FFFD in it.
  decode: (data) => strictUtf8.decode(data),
};

/**
 * A JSON codec typed as `T`. The type is a promise, not a check: `decode` returns whatever
 * JSON the peer sent. `encode` refuses what `JSON.stringify` cannot represent at the top
 * level (`undefined`, a function, a symbol) and what it throws for (a `BigInt`, a cycle);
 * nested `undefined` and functions are dropped, as `JSON.stringify` does.
 */
export function jsonCodec<T = JsonValue>(): BufferCodec<T> {
  return {
    name: 'json',
    encode(value) {
      const text: string | undefined = JSON.stringify(value);
      if (text === undefined) throw new TypeError(`JSON cannot represent ${describeType(value)}`);
      return encodeUtf8(text, 'json');
    },
    decode: (data) => JSON.parse(strictUtf8.decode(data)) as T,
  };
}

/**
 * Node's structured clone (`v8.serialize` / `v8.deserialize`) typed as `T`: objects,
 * arrays, `Map`, `Set`, `Date`, `RegExp`, `BigInt`, `Error`, typed arrays and `Buffer`s,
 * `undefined`, cycles. Functions and symbols cannot be encoded. As with JSON the type is
 * not checked on decode. Only exchange it with Node peers: the format is V8's.
 */
export function structuredCloneCodec<T = unknown>(): BufferCodec<T> {
  return {
    name: 'structuredClone',
    encode: (value) => v8.serialize(value),
    decode: (data) => v8.deserialize(data) as T,
  };
}

/**
 * The ready codecs: `raw` (Buffers, as the untyped Channel), `utf8` (strings, strictly
 * UTF-8 both ways), `json` (any JSON value; use `jsonCodec<T>()` for a narrower type) and
 * `structuredClone` (`v8.serialize`; use `structuredCloneCodec<T>()` to type it).
 */
export const codecs = {
  raw,
  utf8,
  json: jsonCodec<JsonValue>(),
  structuredClone: structuredCloneCodec<unknown>(),
} as const;

/**
 * `codec.encode(value)` as a Buffer; any failure becomes `ERR_CODEC`.
 * @internal
 */
export function encodeWith<T>(codec: Codec<T>, value: T, what: string): Buffer {
  try {
    return toBuffer(codec.encode(value), `${codec.name} encoding`);
  } catch (err) {
    throw codecError(codec, 'encode', what, err);
  }
}

/**
 * `codec.decode(data)`; any failure becomes `ERR_CODEC`.
 * @internal
 */
export function decodeWith<T>(codec: Codec<T>, data: Buffer, what: string): T {
  try {
    return codec.decode(data);
  } catch (err) {
    throw codecError(codec, 'decode', what, err);
  }
}

function codecError(
  codec: Codec<unknown>,
  direction: 'encode' | 'decode',
  what: string,
  err: unknown,
): ShmChannelError {
  if (isShmChannelError(err, 'ERR_CODEC')) return err;
  const reason = err instanceof Error ? err.message : String(err);
  const name = typeof codec.name === 'string' ? codec.name : 'unnamed';
  return createError('ERR_CODEC', `${name} codec could not ${direction} the ${what}: ${reason}`, { cause: err });
}
