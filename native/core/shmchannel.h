/*
 * shmchannel core: the C API a peer links against. No Node, no N-API.
 * The byte layout it implements is docs/PROTOCOL.md (version 3).
 *
 * Threading: one thread may call shmch_write(), one (possibly other) thread shmch_read(),
 * and one more thread shmch_wait(); everything else is for the owning thread.
 * Every value read from the segment is validated; a violation is SHMCH_E_PROTOCOL and the
 * channel stays failed.
 *
 * This is the frame API: a client sends HELLO itself after shmch_attach() and BYE before
 * shmch_close() (which sends none), and fragments and reassembles messages itself
 * (docs/PROTOCOL.md §2, §5). examples/c/notify.c is a whole client.
 *
 * NULL arguments: a function given NULL for a pointer it needs (a channel, a name, an out-pointer,
 * an info struct, a non-empty buffer) returns SHMCH_E_INVALID_ARG (SHMCH_E_INVALID_NAME for a
 * name), or, when it returns no status, does nothing and returns the value its comment names.
 * `err` may always be NULL. An out-pointer is set to NULL / 0 first whenever it is not NULL.
 *
 * Signals: only the functions said to be async-signal-safe may be called from a signal handler
 * (and, as any call there, on a channel the interrupted code is not using in the same role).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHMCH_PROTOCOL_VERSION 3u
#define SHMCH_FRAME_HEADER_SIZE 16u
#define SHMCH_MIN_RING_CAPACITY 4096u
#define SHMCH_MAX_RING_CAPACITY (1u << 30)
#define SHMCH_MAX_MESSAGE_SIZE (1u << 30)
/* What the Node package uses when its options leave them out. */
#define SHMCH_DEFAULT_RING_CAPACITY (1u << 20)
#define SHMCH_DEFAULT_MAX_MESSAGE_SIZE (64u << 20)
/* Loan pools (PROTOCOL §6): allocated in blocks of this size; at most this many bytes each. */
#define SHMCH_POOL_BLOCK_SIZE 4096u
#define SHMCH_MAX_POOL_CAPACITY (1u << 30)
/* Many clients (PROTOCOL §7): a server of more than one client names a directory of this many
 * slots at most; its connections are named "<name>~<slot>", so its name has at most
 * SHMCH_MAX_SERVER_NAME bytes. What the Node package uses when its options leave it out. */
#define SHMCH_MAX_CLIENTS 256u
#define SHMCH_DEFAULT_MAX_CLIENTS 16u
#define SHMCH_MAX_SERVER_NAME 251u
/* What a segment's header says it is (its `kind` field, PROTOCOL §1.1). */
#define SHMCH_SEGMENT_CHANNEL 0u    /* a server and its one client (shmch_create) */
#define SHMCH_SEGMENT_DIRECTORY 1u  /* the name of a server of many clients (shmch_server_create) */
#define SHMCH_SEGMENT_CONNECTION 2u /* one client of such a server: "<name>~<slot>" */
/* A frame's flags: its payload is a shmch_descriptor of a message in the writer's pool. */
#define SHMCH_FLAG_LOANED 1u

enum shmch_kind {
  SHMCH_HELLO = 1,
  SHMCH_BYE = 2,
  SHMCH_NOTIFY = 3,
  SHMCH_REQUEST = 4,
  SHMCH_RESPONSE = 5,
  SHMCH_COMPLETE = 6,
  SHMCH_ERROR = 7,
  SHMCH_CANCEL = 8,
};

typedef enum shmch_status {
  SHMCH_OK = 0,
  SHMCH_E_INVALID_NAME,    /* not a POSIX shm name */
  SHMCH_E_INVALID_SIZE,    /* capacity / message size / segment size out of range */
  SHMCH_E_INVALID_ARG,     /* bad kind, payload over max_frame_payload, null pointer */
  SHMCH_E_EXISTS,          /* a live server owns the name (owner pid reported) */
  SHMCH_E_NOT_FOUND,       /* no segment of that name (yet) */
  SHMCH_E_NOT_READY,       /* segment exists but its server has not finished creating it */
  SHMCH_E_BUSY,            /* another client is attached */
  SHMCH_E_ACCESS,          /* EACCES / EPERM from the OS */
  SHMCH_E_RESOURCE,        /* ENOMEM, ENOSPC, EMFILE, ENFILE */
  SHMCH_E_OS,              /* any other system call failure (errno reported) */
  SHMCH_E_INCOMPATIBLE,    /* not a shmchannel segment, or another protocol version */
  SHMCH_E_PROTOCOL,        /* the peer wrote something invalid into the segment */
  SHMCH_E_FULL,            /* the frame does not fit in the ring now; try again after a wake */
  SHMCH_E_CLOSED,          /* the channel was closed */
  SHMCH_E_TRUNCATED,       /* the segment lost pages (see shmch_guard_truncation) */
} shmch_status;

/* The enumerator's name ("SHMCH_E_BUSY"); "SHMCH_E_UNKNOWN" for a value not in the enum. A
 * static string, never NULL. Async-signal-safe. */
const char* shmch_status_string(shmch_status status);
/* One line saying what the status means ("another client is attached"); "unknown status" for
 * a value not in the enum. A static string, never NULL. Async-signal-safe. */
const char* shmch_status_description(shmch_status status);

typedef enum shmch_role { SHMCH_SERVER = 0, SHMCH_CLIENT = 1 } shmch_role;

/* What a failed call reports besides its status. */
typedef struct shmch_error {
  int sys_errno;          /* errno of the failing system call, 0 if none */
  const char* syscall;    /* its name ("shm_open", ...), or NULL */
  uint32_t owner_pid;     /* with SHMCH_E_EXISTS / SHMCH_E_BUSY: the pid holding the name */
  const char* detail;     /* static text saying what was wrong, or NULL */
} shmch_error;

typedef struct shmch_options {
  uint32_t ring_capacity;    /* bytes per direction, power of two */
  uint32_t max_message_size; /* bytes */
  uint32_t mode;             /* permission bits for shm_open, e.g. 0600 */
  uint32_t pool_capacity;    /* loan pool bytes per direction: 0 (no loans) or a multiple of
                                SHMCH_POOL_BLOCK_SIZE up to SHMCH_MAX_POOL_CAPACITY */
} shmch_options;

/* The payload of a frame flagged SHMCH_FLAG_LOANED (PROTOCOL §6.2): the message is `total`
 * bytes (the frame header's) at pool offset + start of the writer's pool. */
typedef struct shmch_descriptor {
  uint32_t offset;     /* the loan's first byte in the pool, a multiple of SHMCH_POOL_BLOCK_SIZE */
  uint32_t extent;     /* the bytes the loan occupies, a nonzero multiple of SHMCH_POOL_BLOCK_SIZE */
  uint32_t generation; /* the owner's tag of this lending, echoed in the release */
  uint32_t start;      /* where the message starts within the loan */
} shmch_descriptor;

typedef struct shmch_info {
  uint32_t ring_capacity;
  uint32_t max_message_size;
  uint32_t max_frame_payload; /* largest payload this writer puts in one frame (C/4-16; the
                                 wire allows C-16, and readers accept it: PROTOCOL §2.1) */
  uint32_t peer_pid;          /* 0 if no peer */
  uint32_t client_epoch;
  uint32_t state;             /* SHMCH_STATE_* flags as last read */
  uint32_t pool_capacity;     /* loan pool bytes per direction, 0 if the channel has none */
} shmch_info;

#define SHMCH_STATE_SERVER_READY 1u
#define SHMCH_STATE_CLIENT_ATTACHED 2u
#define SHMCH_STATE_SERVER_CLOSED 4u
#define SHMCH_STATE_CLIENT_CLOSED 8u
#define SHMCH_STATE_CLIENT_DROPPED 16u /* the server refused what the client wrote */

/* shmch_wait() results */
#define SHMCH_WAIT_TIMEOUT 0
#define SHMCH_WAIT_READABLE 1
#define SHMCH_WAIT_WOKEN 2

/* shmch_peer_state() results */
#define SHMCH_PEER_NONE 0
#define SHMCH_PEER_ALIVE 1
#define SHMCH_PEER_GONE 2

typedef struct shmch_channel shmch_channel;

/* Anyone who can open a segment read-write can shrink it, and touching a page past its new
 * end raises SIGBUS, which kills the process; so does touching a page that a full /dev/shm
 * cannot provide. This installs a process-wide SIGBUS handler that instead replaces the lost
 * pages of a shmchannel mapping with private zero pages; every later read, write, accept or
 * drop on that channel returns SHMCH_E_TRUNCATED (close it). Any other SIGBUS goes on to the handler installed
 * before, or gets the default action. Idempotent. A handler installed later for SIGBUS (in
 * Node: process.on('SIGBUS')) replaces this one. Without it, shrinking a segment kills the
 * process, as it would any program that maps shared memory. */
shmch_status shmch_guard_truncation(void);

/* Undoes shmch_guard_truncation(): puts back the SIGBUS handler it found, if its own is still
 * the one installed (one installed later is left in place, and keeps whatever it passes
 * signals on to). Mappings still open lose the guard: shrinking one kills the process again.
 * Call it before the code that holds the handler is unloaded (dlclose): a handler left
 * pointing there would run unmapped code. Not counted: one call undoes any number of
 * shmch_guard_truncation() calls, and a later one installs the guard again. Neither is
 * async-signal-safe. */
shmch_status shmch_unguard_truncation(void);

/* 0 if name is a valid POSIX shm name: "/x", no other '/', at most 255 bytes; NULL is
 * SHMCH_E_INVALID_NAME. Async-signal-safe. */
shmch_status shmch_validate_name(const char* name, shmch_error* err);

/* Server: create the segment and allocate all of it (SHMCH_E_RESOURCE if /dev/shm lacks the
 * room). A segment left by a dead server is reclaimed. options is required (SHMCH_DEFAULT_* are
 * the Node package's defaults; nothing here fills them in). Not async-signal-safe (allocates),
 * nor is any function below that takes a name or returns a new object. */
shmch_status shmch_create(const char* name, const shmch_options* options, shmch_channel** out,
                          shmch_error* err);
/* Client: open and attach to an existing segment: a server of one client's channel, or a
 * connection of a server of many (shmch_connect, then shmch_connect_finish waiting up to 2 s:
 * SHMCH_E_NOT_READY if the server did not make it by then). Sends no HELLO: the client's first
 * frame must be one (shmch_write(ch, SHMCH_HELLO, 0, 0, NULL, 0)). */
shmch_status shmch_attach(const char* name, shmch_channel** out, shmch_error* err);
/* Detach and free. The server also unlinks its segment (if it still names this one). Sends no
 * BYE: write one first, as the last frame (PROTOCOL §5.3, §5.5). NULL is ignored. Not
 * async-signal-safe (frees memory). */
void shmch_close(shmch_channel* ch);

/* Fills *info; with a NULL ch, zeros it; with a NULL info, does nothing. Async-signal-safe. */
void shmch_get_info(shmch_channel* ch, shmch_info* info);

/* Append one frame. SHMCH_E_FULL: nothing written, the writer is marked waiting, and the
 * writer's doorbell is rung once the reader frees space. A payload longer than max_frame_payload
 * (shmch_info) is SHMCH_E_INVALID_ARG, and so are a NULL ch and a NULL payload with length > 0.
 * Not async-signal-safe (nor is any read or write below). */
shmch_status shmch_write(shmch_channel* ch, uint8_t kind, uint32_t id, uint32_t total,
                         const uint8_t* payload, uint32_t length);

/* Append a batch of whole one-frame messages laid out as on the wire (16-byte header, payload
 * padded to 8 bytes), as many as fit now, in order; *consumed is the byte count taken. Every
 * frame must be a whole message (length == total) within the limits of shmch_write, else
 * SHMCH_E_INVALID_ARG and nothing is written. Taking less than all of them marks the writer
 * waiting, as SHMCH_E_FULL does. One publish and at most one doorbell for the whole batch.
 * NULL ch or consumed: SHMCH_E_INVALID_ARG. */
shmch_status shmch_write_frames(shmch_channel* ch, const uint8_t* frames, size_t length,
                                size_t* consumed);

/* Copy whole, validated frames (header + padded payload, as on the wire) into dst. *written
 * is the byte count, 0 if the ring is empty. dst_capacity must be at least the ring capacity
 * for every frame to fit. NULL ch or written, or a NULL dst with dst_capacity > 0:
 * SHMCH_E_INVALID_ARG. */
shmch_status shmch_read(shmch_channel* ch, uint8_t* dst, size_t dst_capacity, size_t* written);

/* shmch_read, except that a message of large_from bytes or more is not copied into dst: when
 * it comes first, dst receives its header alone with length 0 (an announcement: no frame on the
 * wire has length 0 and a nonzero total), and the whole message is then read with
 * shmch_read_continuation; when other frames come before it, the read stops there. Saves a
 * large message the copy through dst. NULL arguments as for shmch_read. */
shmch_status shmch_read_announcing(shmch_channel* ch, uint8_t* dst, size_t dst_capacity, uint32_t large_from,
                                   size_t* written);

/* While a message is in progress (shmch_read returned a fragment that did not complete it, or
 * shmch_read_announcing announced it), copies the payloads of its next fragments straight into
 * dst, validated as by shmch_read, and stops at the message's end. dst_capacity must be exactly
 * what the message still lacks (else SHMCH_E_INVALID_ARG, as when no message is in progress).
 * *written is the payload byte count, 0 if no fragment is readable yet. NULL ch, dst or written:
 * SHMCH_E_INVALID_ARG. */
shmch_status shmch_read_continuation(shmch_channel* ch, uint8_t* dst, size_t dst_capacity,
                                     size_t* written);

/* Loans (PROTOCOL §6): a message written in place in this side's pool, sent as a descriptor.
 * The writer's role owns the loan functions, the reader's role the borrow functions (the
 * threading rule above). */

/* Lends `size` bytes (at least one block) of this side's pool: *data is where to write, *offset
 * names the loan, *extent is what it occupies (size rounded up to blocks). SHMCH_E_FULL: no run
 * of free blocks that long now; the writer is marked waiting, and shmch_wait() returns
 * SHMCH_WAIT_WOKEN once the peer released something.
 * SHMCH_E_INVALID_SIZE: larger than the pool or max_message_size, never possible.
 * SHMCH_E_INVALID_ARG: the channel has no pool, or NULL arguments. */
shmch_status shmch_loan(shmch_channel* ch, uint32_t size, uint8_t** data, uint32_t* offset,
                        uint32_t* extent);
/* Gives back a loan that was not sent. SHMCH_E_INVALID_ARG if `offset` names none. */
shmch_status shmch_unloan(shmch_channel* ch, uint32_t offset);
/* Sends bytes [start, start + length) of the loan at `offset` as one message of `kind`
 * (SHMCH_NOTIFY, SHMCH_REQUEST or SHMCH_RESPONSE) with request id `id`: one 16-byte frame
 * crosses the ring. On SHMCH_OK the loan belongs to the peer until it releases it: do not
 * touch its bytes again. SHMCH_E_FULL (ring full): nothing sent, the loan is still yours, try
 * again after a wake. SHMCH_E_INVALID_ARG: not a loan held unsent, a range outside it, another
 * kind. SHMCH_E_INVALID_SIZE: length over max_message_size. */
shmch_status shmch_write_loan(shmch_channel* ch, uint8_t kind, uint32_t id, uint32_t offset,
                              uint32_t start, uint32_t length);
/* A frame read by shmch_read() with SHMCH_FLAG_LOANED carries a shmch_descriptor, already
 * validated (in the pool's bounds, overlapping nothing held) and held by this channel. This
 * gives the bytes of the held loan at `offset` (*data: the loan's first byte; the message is
 * at descriptor.start). They stay valid and unchanged (by an honest peer) until
 * shmch_release(). SHMCH_E_INVALID_ARG if `offset` is not held. */
shmch_status shmch_borrowed(shmch_channel* ch, uint32_t offset, const uint8_t** data,
                            uint32_t* extent);
/* Gives a held loan back to the peer (through its release ring; never blocks, never full with
 * an honest peer). SHMCH_E_INVALID_ARG if not held; SHMCH_E_PROTOCOL if the peer's counters
 * are impossible (the channel fails). */
shmch_status shmch_release(shmch_channel* ch, uint32_t offset);

/* Block until the inbound ring has data, the own doorbell is rung, shmch_wake() is called,
 * or timeout_ms passes (< 0: no timeout).
 * A segment that lost pages is reported readable once, so that the reader learns of it.
 * Returns SHMCH_WAIT_WOKEN at once while the peer has flagged that it left (a server's client
 * closed; a client's server closed or dropped it): check shmch_peer_state() after a wake-up.
 * NULL ch: returns SHMCH_WAIT_TIMEOUT at once. Not async-signal-safe (it sleeps). */
int shmch_wait(shmch_channel* ch, int timeout_ms);
/* shmch_wait_flags() flags. SHMCH_WAIT_IGNORE_READABLE: data in the inbound ring does not end
 * the wait, so a reader that is not reading now (its consumer is slow) can still sleep until
 * the doorbell (the peer wrote more, or freed space we wait for, or left), shmch_wake(), or the
 * timeout; it never returns SHMCH_WAIT_READABLE then, but for a lost segment's one report. */
#define SHMCH_WAIT_IGNORE_READABLE 1
/* shmch_wait() with flags (0: the same as shmch_wait()); unknown bits are ignored. */
int shmch_wait_flags(shmch_channel* ch, int timeout_ms, int flags);
/* Ends a shmch_wait() of another thread early (SHMCH_WAIT_WOKEN), even one that is about to
 * start: the request is remembered until a wait returns. Safe from any thread, and
 * async-signal-safe (atomic stores and a futex wake only): a SIGINT or SIGTERM handler may call it
 * to end a wait; errno is left as it was. NULL is ignored. */
void shmch_wake(shmch_channel* ch);
/* 1 if shmch_wake() reaches a wait through a word of this process alone (futex_waitv, Linux
 * 5.16+); 0 if it rings the doorbell in the segment, which wakes nobody once another process
 * cut that page off: a wait must then keep a timeout to notice a shrunk segment.
 * Async-signal-safe (its first call probes the kernel with one system call). */
int shmch_wake_is_private(void);

/* Adds an inotify watch of the channel's segment (by its descriptor, so a successor under the
 * same name is not watched) to inotify_fd: another process's ftruncate, or write(2), of the
 * object raises IN_MODIFY. Returns the watch descriptor, -1 with errno on failure (EINVAL for a
 * NULL ch). Not async-signal-safe. */
int shmch_watch_segment(shmch_channel* ch, int inotify_fd);
/* Compares the object's size with the mapping: if another process shrank it, the channel is
 * lost from now on (as after a SIGBUS in it) and the next shmch_wait() reports it. Returns 1 if
 * the segment is lost. Safe from any thread while the channel is open; 0 for a NULL ch. Not
 * async-signal-safe. */
int shmch_check_segment(shmch_channel* ch);

/* Is the peer process still the one that attached (pid + start time)? A client also finds its
 * server gone once the server flagged itself closed or this client dropped. Opens /proc/PID/stat
 * on each call. SHMCH_PEER_NONE for a NULL ch. Not async-signal-safe. */
int shmch_peer_state(shmch_channel* ch);

/* A pidfd of the peer process that shmch_peer_state() last found alive: it polls readable
 * (POLLIN) when that process exits, so a waiter can learn of the death at once instead of at
 * its next timed check. -1 if there is no such peer, it is already gone, or the kernel has no
 * pidfd_open (Linux < 5.3), or ch is NULL. The caller owns the descriptor. Not
 * async-signal-safe. */
int shmch_open_peer_fd(shmch_channel* ch);

/* Server: forget the current client, once it closed (CLIENT_CLOSED with CLIENT_ATTACHED) or
 * died, not on its BYE alone (PROTOCOL §5.3); reset the rings; accept the next. What the
 * client borrowed from our pool is ours again; what we held of its pool is no longer held (the
 * bytes stay mapped, but the next client reuses them: drop every pointer into them first).
 * Loans of ours not sent stay loaned. A client's or NULL channel: SHMCH_E_INVALID_ARG. Not
 * async-signal-safe. */
shmch_status shmch_accept_next(shmch_channel* ch);

/* Server: the client broke the protocol (the channel read SHMCH_E_PROTOCOL): flag it dropped
 * and ring its doorbell. The channel stays failed, and reads nothing more, until the client
 * has closed or died and shmch_accept_next() takes the next one. A client that sees the flag
 * closes (shmch_peer_state() reports its server gone). With no client attached, the slot is
 * marked attached and closed instead, so that shmch_peer_state() reports it gone at once. A
 * client's or NULL channel: SHMCH_E_INVALID_ARG. Not async-signal-safe. */
shmch_status shmch_drop_client(shmch_channel* ch);

/* ---- Many clients (PROTOCOL §7) ----
 *
 * A server of many clients names a directory, not a channel: a client claims one of its slots,
 * the server makes that client a connection of its own ("<name>~<slot>", a channel segment of
 * kind SHMCH_SEGMENT_CONNECTION with the server's options), and the client attaches to it. Every
 * connection is a shmch_channel as above (write, read, loans, shmch_drop_client, shmch_peer_state);
 * what differs is who waits: all of a server's connections ring one doorbell, the directory's,
 * and the server waits for all of them at once with shmch_server_wait(). */

/* Client, in steps, so that an event loop need not block: shmch_connect() claims a slot (or, for
 * a server of one client, attaches at once); shmch_connect_finish() hands over the attached
 * channel once the server made the connection; shmch_connect_cancel() frees the attempt, and
 * gives the slot back if no channel was handed over. shmch_attach() does all three. */
typedef struct shmch_connect_attempt shmch_connect_attempt;

/* Errors as shmch_attach(); SHMCH_E_BUSY when every slot is taken (owner_pid: the holder of
 * slot 0); SHMCH_E_NOT_READY while a slot of a client that left is still being freed. */
shmch_status shmch_connect(const char* name, shmch_connect_attempt** out, shmch_error* err);
/* SHMCH_OK: *out is attached (send HELLO first), and belongs to the caller. SHMCH_E_NOT_READY:
 * not yet; waits up to timeout_ms (0: only looks; < 0: no limit) for the server first.
 * SHMCH_E_RESOURCE: the server could not make the connection (its /dev/shm is full, say).
 * SHMCH_E_NOT_READY with detail "server gone": the server closed or died meanwhile. After any
 * status but NOT_READY the attempt is over: cancel it. NULL attempt or out: SHMCH_E_INVALID_ARG. */
shmch_status shmch_connect_finish(shmch_connect_attempt* attempt, int timeout_ms, shmch_channel** out,
                                  shmch_error* err);
/* Frees the attempt; a slot claimed and never handed over as a channel goes back to the server.
 * NULL is ignored. */
void shmch_connect_cancel(shmch_connect_attempt* attempt);

typedef struct shmch_server shmch_server;

/* Creates the directory `name` (at most SHMCH_MAX_SERVER_NAME bytes) with max_clients slots
 * (1 to SHMCH_MAX_CLIENTS) and mode; every connection gets `options` (as shmch_create's). A
 * directory left by a dead server is reclaimed with its connections. Starts one thread: the
 * liveness watch of every connection's client (epoll over pidfds), joined by
 * shmch_server_close(). No connection exists until a client asks: shared memory grows with the
 * clients connected, not with max_clients. */
shmch_status shmch_server_create(const char* name, const shmch_options* options, uint32_t max_clients,
                                 shmch_server** out, shmch_error* err);
/* Closes every connection (each client learns as from shmch_close on a channel), unlinks them and
 * the directory, joins the liveness thread, frees. Connections handed out are freed with it:
 * drop every pointer to them first. NULL is ignored.
 * fork(): a server belongs to the process that created it. A child forked from it may only free
 * its copy, with this (or shmch_server_disconnect / shmch_close of a connection): that frees the
 * child's descriptors and mappings and says nothing to anyone (no name unlinked, no flag set, the
 * parent's watch of its clients untouched). */
void shmch_server_close(shmch_server* srv);

/* Sleeps until a client asks for a connection, a connection has data (SHMCH_WAIT_READABLE), a
 * blocked write or loan of one may go on, a client left or died, shmch_server_wake(), or
 * timeout_ms (< 0: none); it looks again by itself at least every second (any client can write
 * the shared doorbell, and so undo another's ring). SHMCH_WAIT_WOKEN for all but data and the
 * timeout: then call
 * shmch_server_accept() and shmch_server_left(). One thread waits; shmch_server_accept() and
 * shmch_server_disconnect() must not run during its wait (call them between waits, as the
 * Node binding does while its waker is disarmed). NULL: SHMCH_WAIT_TIMEOUT at once. */
int shmch_server_wait(shmch_server* srv, int timeout_ms);
/* shmch_wake() for a server's wait: safe from any thread, async-signal-safe. NULL is ignored. */
void shmch_server_wake(shmch_server* srv);

/* Makes the connection of one client that asked: *out (server role; the server owns it, free it
 * with shmch_server_disconnect), *connection_id (unique for the server's life, > 0) and
 * *client_pid. SHMCH_E_NOT_FOUND: nobody asks now. Any other failure refuses that one client
 * (it learns SHMCH_E_RESOURCE) and is reported here; call again for the next. */
shmch_status shmch_server_accept(shmch_server* srv, shmch_channel** out, uint32_t* connection_id,
                                 uint32_t* client_pid, shmch_error* err);
/* The ids of connections whose client closed (CLIENT_CLOSED), died, or never attached (it died
 * first, or 10 s passed since the server made its connection: its claim named a process that is
 * not connecting), each reported once: at most `capacity` into ids; returns how many. The caller then reads what
 * is left and calls shmch_server_disconnect(). NULL srv: 0. */
size_t shmch_server_left(shmch_server* srv, uint32_t* ids, size_t capacity);
/* Ends one connection: flags SERVER_CLOSED and rings its client (who learns as from shmch_close
 * on a channel), unlinks its segment, frees its slot, frees conn. For a connection of srv only;
 * anything else is ignored. */
void shmch_server_disconnect(shmch_server* srv, shmch_channel* conn);
/* Connections now (handed out by shmch_server_accept and not disconnected); 0 for NULL. */
uint32_t shmch_server_connections(shmch_server* srv);

typedef struct shmch_segment_info {
  uint32_t version;
  uint32_t ring_capacity;
  uint32_t max_message_size;
  uint32_t pool_capacity;
  uint32_t state;
  uint32_t server_pid;
  uint32_t client_pid;
  int server_alive; /* the server process that created it still runs */
  int client_alive;
  uint32_t kind;        /* SHMCH_SEGMENT_*: what the name holds */
  uint32_t max_clients; /* a directory's slots; 1 for a channel or a connection */
  uint32_t connection_id; /* a connection's id (its header's client_epoch); 0 otherwise */
} shmch_segment_info;

/* One slot of a directory as read by shmch_inspect_clients(). */
typedef struct shmch_client_info {
  uint32_t slot;          /* its connection is "<name>~<slot>" */
  uint32_t pid;           /* the client that holds the slot */
  uint32_t phase;         /* SHMCH_SLOT_* */
  uint32_t connection_id; /* 0 before the server made the connection */
  int alive;              /* that process still runs (pid and start time) */
} shmch_client_info;

/* A directory slot's phase (PROTOCOL §7.2). */
#define SHMCH_SLOT_FREE 0u
#define SHMCH_SLOT_CLAIMED 1u   /* a client took it and asks for a connection */
#define SHMCH_SLOT_READY 2u     /* the server made the connection; the client attaches to it */
#define SHMCH_SLOT_CANCELLED 3u /* the client gave up before READY; the server frees it */
#define SHMCH_SLOT_REFUSED 4u   /* the server could not make the connection; it frees it */

/* The taken slots of directory `name` (SHMCH_E_INCOMPATIBLE if it is not one), in slot order:
 * at most `capacity` into `clients`; *count is how many slots are taken (may exceed capacity).
 * NULL count: SHMCH_E_INVALID_ARG. Not async-signal-safe. */
shmch_status shmch_inspect_clients(const char* name, shmch_client_info* clients, size_t capacity,
                                   size_t* count, shmch_error* err);

/* Reads a segment's header without attaching: SHMCH_E_INCOMPATIBLE if it is not ours,
 * SHMCH_E_TRUNCATED if it shrank while being read. NULL info: SHMCH_E_INVALID_ARG. Not
 * async-signal-safe. */
shmch_status shmch_inspect(const char* name, shmch_segment_info* info, shmch_error* err);

/* Remove a segment by name; a directory's connections "<name>~<slot>" go with it (read from
 * the directory first: a name that is not ours is removed alone). Not async-signal-safe. */
shmch_status shmch_unlink(const char* name, shmch_error* err);

/* Raw shared memory: a named POSIX shm object of any size, mapped read-write, for data that
 * does not go through a channel. Its mapping is guarded like a channel's: once
 * shmch_guard_truncation() is installed, pages that another process cuts off read as zeros
 * here instead of raising SIGBUS, and shmch_shm_truncated() says so. */
typedef struct shmch_shm shmch_shm;

/* Creates the object (it must not exist yet) with size bytes (at least 1), zero-filled,
 * permission bits mode exactly (the umask does not apply), and maps it. Sparse: a page is
 * allocated when first touched, so a full /dev/shm shows as a truncated page, not as a
 * failure here. */
shmch_status shmch_shm_create(const char* name, size_t size, uint32_t mode, shmch_shm** out,
                              shmch_error* err);
/* Opens an existing object and maps all of it, whatever its size (SHMCH_E_NOT_READY while it
 * has none: its creator has not sized it yet). */
shmch_status shmch_shm_open(const char* name, shmch_shm** out, shmch_error* err);
/* The mapping and its size; NULL and 0 for a NULL shm. Async-signal-safe. */
uint8_t* shmch_shm_data(const shmch_shm* shm);
size_t shmch_shm_size(const shmch_shm* shm);
/* 1 once this process touched a page of the mapping that the object lost: from that page to
 * the end the mapping is private zeros, and what another process wrote there is gone. 0 for a
 * NULL shm. Async-signal-safe. */
int shmch_shm_truncated(const shmch_shm* shm);
/* Unmaps and frees; the object itself stays until shmch_unlink(). NULL is ignored. Not
 * async-signal-safe. */
void shmch_shm_close(shmch_shm* shm);

#ifdef __cplusplus
}
#endif
