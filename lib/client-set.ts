// The clients of a server of many, and what the server does across them: a broadcast (each
// client with its own backpressure and bound, a slow one never stalling the others), drained(),
// and finding the one client that a server-wide request() or loan() may go to.
import type { Buffer } from 'node:buffer';

import type { Connection } from './connection';
import { createError, type ShmChannelError } from './errors';
import { lenderOf } from './loans';

export class ClientSet {
  private readonly connections = new Map<number, Connection>();

  constructor(
    private readonly name: string,
    /** A client whose queue cannot take a broadcast within its bound: the server drops it. */
    private readonly queueFull: (client: Connection, err: ShmChannelError) => void,
  ) {}

  add(client: Connection): void {
    this.connections.set(client.id, client);
  }

  get(id: number): Connection | undefined {
    return this.connections.get(id);
  }

  has(client: Connection): boolean {
    return this.connections.get(client.id) === client;
  }

  delete(client: Connection): void {
    if (this.has(client)) this.connections.delete(client.id);
  }

  clear(): void {
    this.connections.clear();
  }

  /** Every connection, including those still closing; safe to end them while iterating. */
  values(): IterableIterator<Connection> {
    return this.connections.values();
  }

  get queuedBytes(): number {
    let sum = 0;
    for (const c of this.connections.values()) sum += c.queuedBytes;
    return sum;
  }

  /** Whether a client that said hello is still connected. */
  anySaidHello(): boolean {
    for (const c of this.connections.values()) if (c.isOpen && c.saidHello) return true;
    return false;
  }

  /**
   * `payload` to every open connection: false when some client's copy waits in its queue. A
   * loan goes by reference to the client whose pool it is in, last (that detaches it), and by
   * copy to the others.
   */
  broadcast(payload: Buffer): boolean {
    const lender = lenderOf(payload);
    const targets = this.open();
    if (lender !== undefined) targets.sort((a, b) => Number(a.lendsFrom(lender)) - Number(b.lendsFrom(lender)));
    let inRings = true;
    for (const c of targets) inRings = this.deliver(c, () => c.broadcast(payload)) && inRings;
    return inRings;
  }

  /** notifyMany() to every open connection: each gets all of them, or (dropped) none. */
  broadcastMany(payloads: readonly Buffer[]): boolean {
    let inRings = true;
    for (const c of this.open()) inRings = this.deliver(c, () => c.broadcastMany(payloads)) && inRings;
    return inRings;
  }

  /**
   * Resolves once every client's queue is empty. A client that leaves (or is dropped) meanwhile
   * no longer counts: what was queued for it went with it, and clientErrors$ told of a drop.
   * Rejects with why once `serverClosed()`.
   */
  drained(serverClosed: () => boolean): Promise<void> {
    const each = this.open().map((c) =>
      c.drained().catch((err: unknown) => {
        if (serverClosed()) throw err;
      }),
    );
    return Promise.all(each).then(() => undefined);
  }

  /**
   * The one client connected, for a server-wide `what` (a request, a loan): ERR_PEER_LOST with
   * none, ERR_AMBIGUOUS_CLIENT with several, naming the Connection method to use instead.
   */
  sole(what: string, method: string): Connection {
    const attached = this.open().filter((c) => c.attached);
    if (attached.length === 1) return attached[0];
    if (attached.length === 0) {
      const why = method === 'request' ? 'nobody could answer the request' : `${what} lends from a client's pool`;
      throw createError('ERR_PEER_LOST', `no client is connected to ${this.name}: ${why}`);
    }
    throw createError(
      'ERR_AMBIGUOUS_CLIENT',
      `${attached.length} clients are connected to ${this.name}, and the server's ${what} cannot choose one: ` +
        `call Connection.${method}() on the client's Connection (from clients$, or IncomingRequest.client)`,
    );
  }

  private open(): Connection[] {
    const open: Connection[] = [];
    for (const c of this.connections.values()) if (c.isOpen) open.push(c);
    return open;
  }

  /** One client's copy; a full queue drops that client, a client already going is skipped. */
  private deliver(client: Connection, send: () => boolean): boolean {
    try {
      return send();
    } catch (err) {
      const code = (err as Partial<ShmChannelError>).code;
      if (code === 'ERR_QUEUE_FULL') {
        this.queueFull(client, err as ShmChannelError);
        return true;
      }
      // A write that failed on its rings dropped that client already.
      if (code === 'ERR_PROTOCOL' || code === 'ERR_CHANNEL_CLOSED' || code === 'ERR_PEER_LOST') return true;
      // Anything else is the caller's (a loan already sent): the same for every client.
      throw err;
    }
  }
}
