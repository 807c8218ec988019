/*
 * shmchannel message API: whole messages, requests and responses over the frame API of
 * shmchannel.h, so that a C program does not implement docs/PROTOCOL.md §2 and §5 itself.
 *
 * An endpoint is one end of a channel: a server of one client (it creates the segment, and
 * takes the next client after one leaves) or a client (it attaches, waiting for the server if
 * asked), of such a server or of a server of many clients (shmch_server_create(): the client's
 * channel is then its own connection of that server). It says HELLO and BYE, cuts messages
 * into fragments and puts them together again, allocates request ids, keeps track of the
 * requests in flight both ways, builds and parses ERROR payloads, and watches the peer. It
 * uses only the functions of shmchannel.h.
 *
 *   shmch_endpoint* ep;
 *   shmch_endpoint_open("/name", SHMCH_CLIENT, NULL, &ep, NULL);    // waits for the server
 *   uint32_t id;
 *   shmch_endpoint_request(ep, (const uint8_t*)"ping", 4, &id);
 *   for (;;) {
 *     shmch_message m;
 *     if (shmch_endpoint_receive(ep, &m) != SHMCH_OK) break;        // the server left
 *     if (m.kind == 0) { shmch_endpoint_wait(ep, -1); continue; }    // nothing yet
 *     if (m.kind == SHMCH_RESPONSE && m.id == id) printf("%.*s\n", (int)m.size, (const char*)m.data);
 *     if ((m.kind == SHMCH_COMPLETE || m.kind == SHMCH_ERROR) && m.id == id) break;
 *   }
 *   shmch_endpoint_close(ep, 1000);
 *
 * examples/c/channel.c is a whole program (both roles).
 *
 * Threading: an endpoint belongs to one thread. Only shmch_endpoint_wake() may be called from
 * another thread (or a signal handler). Do not use the frame API on an endpoint's channel
 * (shmch_endpoint_channel() is for shmch_get_info() and the like).
 *
 * fork(): an endpoint belongs to the process that opened it. A child may only close its copy
 * (or leave it alone); that does not disturb the parent's watch of its peer, but closing it
 * does speak on the parent's channel (BYE, the closed flag), so a child that does not mean to
 * end the session should leave its copy unclosed.
 *
 * NULL arguments, as in shmchannel.h: a NULL endpoint, out-pointer or message is
 * SHMCH_E_INVALID_ARG (a NULL or invalid name SHMCH_E_INVALID_NAME), and so is a NULL data
 * pointer with a nonzero size; `err` and `options` may always be NULL. Out-pointers are set to
 * NULL / 0 first whenever they are not NULL.
 *
 * Signals: only shmch_endpoint_wake() is async-signal-safe. Everything else may allocate.
 */
#pragma once

#include "shmchannel.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shmch_endpoint shmch_endpoint;

typedef struct shmch_endpoint_options {
  /* Server only (a client takes the server's): 0 takes SHMCH_DEFAULT_RING_CAPACITY,
   * SHMCH_DEFAULT_MAX_MESSAGE_SIZE and 0600. */
  uint32_t ring_capacity;
  uint32_t max_message_size;
  uint32_t mode;
  /* Bytes of outgoing messages kept in this process while the ring is full (0: the ring
   * capacity). A message is always taken when nothing is queued, whatever its size up to
   * max_message_size; otherwise only while the queue stays within this bound. */
  uint32_t queue_limit;
  /* Client only: how long shmch_endpoint_open() waits for a server to appear (a missing
   * segment, SHMCH_E_NOT_FOUND, or one not ready yet or still freeing the previous client's
   * slot, SHMCH_E_NOT_READY, are tried again until then), and for a server of many clients to
   * make this client's connection (a server that closes or dies meanwhile is given up, and the
   * name tried again). 0: one try, though a server of many that is there still gets up to 2 s
   * to make the connection, as shmch_attach() gives it; < 0: no limit. */
  int connect_timeout_ms;
  /* Client only, may be NULL: a way to give up that wait from another thread. Set *abort_flag
   * to nonzero (any thread; a plain store will do, it is read with an atomic load before every
   * try and at least every 10 ms while sleeping between tries or waiting for a server of many
   * to make the connection) and shmch_endpoint_open() returns SHMCH_E_CLOSED within about
   * 10 ms, having opened nothing (a slot it claimed goes back to the server). A flag already set
   * before the call makes it return SHMCH_E_CLOSED at once. The int must stay valid until
   * shmch_endpoint_open() returns; the endpoint does not keep the pointer. */
  const int* abort_flag;
} shmch_endpoint_options;

/* What shmch_endpoint_receive() hands over. */
typedef struct shmch_message {
  /* A frame kind (enum shmch_kind), or 0 when there was nothing to receive:
   * SHMCH_HELLO     server: a client connected (its HELLO). Never on a client.
   * SHMCH_BYE       the peer left: by its BYE, by closing, by dying, or (server) because its
   *                 client broke the protocol and was dropped (PROTOCOL §4: a malformed frame,
 *                 a frame after its BYE, a REQUEST id still in flight used again, or a message
 *                 too large for this process to allocate). Every request in flight both
   *                 ways ended with it, without a frame. A server then takes the next client by
   *                 itself; a client's endpoint is over (its sends return SHMCH_E_CLOSED).
   * SHMCH_NOTIFY    a notification: data, size.
   * SHMCH_REQUEST   a request of the peer: id (any value, 0 included), data, size. Answer it
   *                 with shmch_endpoint_respond/complete/reply/fail, once or as a stream.
   * SHMCH_RESPONSE  one value of the response to our request id.
   * SHMCH_COMPLETE  our request id ended successfully (no more responses).
   * SHMCH_ERROR     our request id failed: error_message, error_code (PROTOCOL §2.4); data
   *                 and size are the raw payload.
   * SHMCH_CANCEL    the peer gave up its request id: stop; nothing more may be sent for it.
   * Frames for requests not in flight (stale after a cancel) are not handed over. */
  int kind;
  uint32_t id;
  const uint8_t* data; /* NULL when size is 0; valid until the next receive or close */
  size_t size;
  /* SHMCH_ERROR only (NULL otherwise), NUL-terminated valid UTF-8 (a NUL or an ill-formed
   * sequence the peer sent is replaced by U+FFFD, as a UTF-8 decoder would), valid as long as
   * data: the
   * message (the whole payload when it is not a JSON object with a string "message"), and the
   * code (NULL when the payload has no string "code"; "ERR_NO_HANDLER" when the peer had no
   * handler). */
  const char* error_message;
  const char* error_code;
} shmch_message;

/* shmch_endpoint_wait() results: a bitmask, 0 never returned. */
#define SHMCH_EV_READABLE 1 /* shmch_endpoint_receive() has something */
#define SHMCH_EV_WRITABLE 2 /* a send that returned SHMCH_E_FULL may be tried again */
#define SHMCH_EV_PEER_LEFT 4 /* the peer left (a SHMCH_BYE is waiting to be received) */
#define SHMCH_EV_WOKEN 8 /* shmch_endpoint_wake() was called */
#define SHMCH_EV_TIMEOUT 16 /* timeout_ms passed with none of the above */
/* The outgoing queue (shmch_endpoint_queued()) went from nonempty to empty since the last
 * wait that reported this bit: everything queued is in the ring now, or was dropped because
 * the peer left (SHMCH_EV_PEER_LEFT then says so). Reported once per emptying, also when the
 * emptying happened in a send, receive or flush call before the wait. A queue that was never
 * nonempty reports nothing: look at shmch_endpoint_queued() before waiting for this. */
#define SHMCH_EV_DRAINED 32

/* Opens an endpoint on channel `name`. SHMCH_SERVER creates the segment (shmch_create: a live
 * server of that name is SHMCH_E_EXISTS, a dead one's segment is reclaimed); SHMCH_CLIENT
 * attaches (waiting up to options->connect_timeout_ms, see above; a timeout returns the last
 * status: SHMCH_E_NOT_FOUND, no server, or SHMCH_E_NOT_READY, a server not ready or one of many
 * that has not made the connection; options->abort_flag set: SHMCH_E_CLOSED, with err->detail
 * "aborted") and sends HELLO. It connects as shmch_connect() and shmch_connect_finish() do (a
 * server of one client or of many). Other failures are shmch_create's and those of
 * shmch_connect() and shmch_connect_finish() (SHMCH_E_BUSY: another client is connected, or
 * every slot of a server of many is taken; SHMCH_E_RESOURCE: a server of many could not make
 * the connection), reported in *err as they report them. An invalid role is
 * SHMCH_E_INVALID_ARG. */
shmch_status shmch_endpoint_open(const char* name, shmch_role role, const shmch_endpoint_options* options,
                                 shmch_endpoint** out, shmch_error* err);

/* Sends what is queued (waiting up to flush_timeout_ms for the peer to make room; < 0: no
 * limit; what the peer sends meanwhile is read and discarded, so a peer that waits for us to
 * read is not stuck), then BYE as the last frame, then closes the channel (a server also removes its
 * segment) and frees the endpoint. SHMCH_OK: everything queued went out, and BYE too;
 * SHMCH_E_FULL: the timeout passed first (what was still queued is lost; a peer learns that
 * we left from the segment's flags); SHMCH_E_CLOSED: the peer had left, or (server) no client
 * was there, so queued messages were dropped. The endpoint is freed whatever the status;
 * NULL: SHMCH_E_INVALID_ARG. */
shmch_status shmch_endpoint_close(shmch_endpoint* ep, int flush_timeout_ms);

/* Sending. Each call sends one whole message (any size up to max_message_size: larger is
 * SHMCH_E_INVALID_SIZE), cut into frames of at most max_frame_payload bytes. What does not fit
 * in the ring now is copied and queued in this process, and written as the peer makes room
 * (during any later call on the endpoint: keep calling shmch_endpoint_wait/receive).
 * SHMCH_E_FULL: the queue is at queue_limit: nothing was sent or queued; wait for
 * SHMCH_EV_WRITABLE and try again. SHMCH_E_CLOSED: a client whose server left (or that was
 * closed). SHMCH_E_PROTOCOL / SHMCH_E_TRUNCATED: the channel failed (the peer broke the
 * protocol, or the segment shrank). A server with no client writes into the ring for the next
 * one, as the Node package does; those frames are dropped if a client comes and goes first. */

/* A notification. */
shmch_status shmch_endpoint_notify(shmch_endpoint* ep, const uint8_t* data, size_t size);
/* A request: *id receives its id (nonzero, not in flight, counting up from 1). Its answer
 * arrives as SHMCH_RESPONSE messages and one SHMCH_COMPLETE or SHMCH_ERROR of that id (or a
 * SHMCH_BYE). There is no timeout on the wire: give up with shmch_endpoint_cancel(). */
shmch_status shmch_endpoint_request(shmch_endpoint* ep, const uint8_t* data, size_t size, uint32_t* id);
/* Gives up our request id: sends CANCEL; later frames for it are not handed over.
 * SHMCH_E_INVALID_ARG if id is not a request of ours in flight (nothing is sent). */
shmch_status shmch_endpoint_cancel(shmch_endpoint* ep, uint32_t id);

/* Answering the peer's request id (one received as SHMCH_REQUEST, not yet ended, not
 * cancelled: else SHMCH_E_INVALID_ARG, and nothing is sent; a request the peer cancelled
 * while its CANCEL is still unread is answered, and the peer ignores it).
 * respond: one value of the response (a RESPONSE frame); the request stays open.
 * complete: ends it successfully (COMPLETE).
 * reply: respond then complete, for a single-value answer.
 * fail: ends it with an ERROR whose payload is the JSON object of PROTOCOL §2.4,
 *   {"code":code,"message":message} ("code" left out when code is NULL), strings escaped as
 *   JSON, code cut to 128 bytes, and message shortened with "… (truncated, N bytes)" if the
 *   payload would exceed max_message_size. code and message are UTF-8 (a NULL message is
 *   ""). The peer's Node side sees ERR_REMOTE with remoteCode = code (ERR_NO_HANDLER for
 *   that code). */
shmch_status shmch_endpoint_respond(shmch_endpoint* ep, uint32_t id, const uint8_t* data, size_t size);
shmch_status shmch_endpoint_complete(shmch_endpoint* ep, uint32_t id);
shmch_status shmch_endpoint_reply(shmch_endpoint* ep, uint32_t id, const uint8_t* data, size_t size);
shmch_status shmch_endpoint_fail(shmch_endpoint* ep, uint32_t id, const char* code, const char* message);

/* Receiving. Never blocks. Reads the ring (copying nothing more in while something received is
 * still to be handed over: the peer's writes wait, which is the backpressure), sends what is
 * queued, notices a departed peer (and, as a server, takes the next client), then hands over
 * the next message in order, or one with kind 0 if there is none yet.
 * SHMCH_OK: *msg is filled (kind 0: nothing now; wait with shmch_endpoint_wait()).
 * SHMCH_E_CLOSED: a client whose server left, after the SHMCH_BYE was handed over;
 * SHMCH_E_PROTOCOL / SHMCH_E_TRUNCATED likewise, when that is why it ended (a server drops a
 * client that breaks the protocol, hands over a SHMCH_BYE, and goes on; a server's shrunk
 * segment ends it). *msg is zeroed then. */
shmch_status shmch_endpoint_receive(shmch_endpoint* ep, shmch_message* msg);

/* Blocks until something happens, or timeout_ms passes (< 0: no limit), and says what, as
 * SHMCH_EV_* bits. Returns at once with SHMCH_EV_READABLE while something is to be received:
 * receive until kind 0 before waiting again. A client whose server left gets
 * SHMCH_EV_PEER_LEFT at once on every call: stop waiting then. It does the work of a receive
 * (reading, sending what is queued, taking the next client) without handing anything over.
 * The peer is watched through a pidfd (shmch_open_peer_fd) on a thread of the endpoint that
 * wakes the wait when the peer process exits, so a death is seen at once and /proc is read
 * only when something changed; without a pidfd (Linux < 5.3) the wait wakes every 250 ms to
 * look. NULL ep: SHMCH_EV_TIMEOUT at once. */
int shmch_endpoint_wait(shmch_endpoint* ep, int timeout_ms);
/* shmch_endpoint_wait() that ends only for the SHMCH_EV_* bits in `events`, SHMCH_EV_PEER_LEFT
 * and SHMCH_EV_WOKEN (always), or SHMCH_EV_TIMEOUT; it returns only those bits. A bit not asked
 * for does not end the wait and is kept for a later one (SHMCH_EV_WRITABLE, SHMCH_EV_DRAINED),
 * or stays true (SHMCH_EV_READABLE). For a receiver that pauses receiving (its consumer is
 * slow) while its own messages are still queued out: without SHMCH_EV_READABLE in `events`,
 * what waits to be received neither ends the wait nor is read further from the ring (the
 * peer's writes wait there), yet the queue is sent as the peer makes room, so
 *   shmch_endpoint_wait_for(ep, SHMCH_EV_WRITABLE | SHMCH_EV_DRAINED, -1)
 * sleeps until the queue moves (SHMCH_EV_WRITABLE after a SHMCH_E_FULL send, or empties), the
 * peer leaves, or shmch_endpoint_wake(). Without SHMCH_EV_READABLE, a server whose channel
 * failed (its receive would report the error) waits for the timeout or a wake. events
 * READABLE|WRITABLE|DRAINED is shmch_endpoint_wait(). NULL ep: SHMCH_EV_TIMEOUT at once. */
int shmch_endpoint_wait_for(shmch_endpoint* ep, int events, int timeout_ms);

/* Ends a shmch_endpoint_wait() (or _wait_for()) early with SHMCH_EV_WOKEN (remembered if no wait is under
 * way). Any thread; async-signal-safe (errno is kept). NULL is ignored. */
void shmch_endpoint_wake(shmch_endpoint* ep);

/* Writes what is queued, waiting up to timeout_ms (< 0: no limit) for room, and reading
 * meanwhile (what arrives is kept for receive beyond the usual one message, so that two
 * endpoints that flush to each other do not wait for each other; but only up to
 * max_message_size plus four ring capacities: past that the flush reads no more and the peer
 * waits, so a peer that writes without end neither fills our memory nor holds the flush past
 * timeout_ms). SHMCH_OK: nothing is queued any more; SHMCH_E_FULL: the timeout passed; other
 * statuses as for a send. */
shmch_status shmch_endpoint_flush(shmch_endpoint* ep, int timeout_ms);

/* Bytes of messages queued in this process, not yet in the ring. 0 for NULL. */
size_t shmch_endpoint_queued(const shmch_endpoint* ep);

/* 1 while a peer is there: a server's client said HELLO and has not left; a client's server
 * has not left. 0 otherwise and for NULL. */
int shmch_endpoint_connected(const shmch_endpoint* ep);

/* The channel underneath, for shmch_get_info() (sizes, peer pid) and the like; NULL for a NULL
 * ep. Valid until shmch_endpoint_close(). Writing or reading frames on it breaks the endpoint. */
shmch_channel* shmch_endpoint_channel(const shmch_endpoint* ep);

#ifdef __cplusplus
}
#endif
