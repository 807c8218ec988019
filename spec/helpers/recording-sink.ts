// A ResponseSink that records the frames an IncomingRequest would send, for specs of the
// answering side (handleWith, handleTypedWith) in one process, without a channel.
import type { ResponseSink } from '../../lib/incoming-request';
import { FrameKind } from '../../lib/protocol';

export interface SentFrame {
  kind: number;
  id: number;
  text: string;
  /** When it was sent, by the sink's clock (a TestScheduler's frame in marble tests). */
  at: number;
}

export class RecordingSink implements ResponseSink {
  readonly sent: SentFrame[] = [];
  readonly finishedIds: number[] = [];
  /** What respond() or next() were given after the request was cancelled. */
  readonly unsentData: unknown[] = [];
  /** sendResponse throws this for RESPONSE frames, as a channel does for a value too large. */
  refuseValues: Error | undefined;

  constructor(private readonly now: () => number = () => 0) {}

  sendResponse(kind: number, id: number, data: Buffer): void {
    if (kind === FrameKind.RESPONSE && this.refuseValues !== undefined) throw this.refuseValues;
    this.sent.push({ kind, id, text: data.toString(), at: this.now() });
  }

  finished(id: number): void {
    this.finishedIds.push(id);
  }

  unsent(data: unknown): void {
    this.unsentData.push(data);
  }

  /** The frames sent for request `id`: `RESPONSE text`, `COMPLETE`, `ERROR {json}`. */
  framesOf(id: number): string[] {
    return this.sent.filter((f) => f.id === id).map(describeFrame);
  }

  /** framesOf(id), each after the time it was sent: `3 RESPONSE x`. */
  timeline(id: number): string[] {
    return this.sent.filter((f) => f.id === id).map((f) => `${f.at} ${describeFrame(f)}`);
  }
}

function describeFrame(f: SentFrame): string {
  return `${kindName(f.kind)}${f.text === '' ? '' : ` ${f.text}`}`;
}

export function kindName(kind: number): string {
  return Object.entries(FrameKind).find(([, k]) => k === kind)?.[0] ?? String(kind);
}

/** The payload of the ERROR frame sent for request `id`, parsed, if one was sent. */
export function errorPayloadOf(sink: RecordingSink, id: number): unknown {
  const frame = sink.sent.find((f) => f.id === id && f.kind === FrameKind.ERROR);
  return frame === undefined ? undefined : (JSON.parse(frame.text) as { code?: unknown; message?: unknown });
}
