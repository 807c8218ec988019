// The message API of shmchannel_message.h: endpoints over the frame API of shmchannel.h (and
// nothing else of the core: this file must keep working whatever the frame layer does inside).
// The policy is the Node package's (lib/): HELLO and BYE, fragments, request ids, the requests
// in flight both ways, the ERROR payload, the next client after one leaves.
#include <string.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <deque>
#include <new>
#include <string>
#include <unordered_set>
#include <vector>

#include "message_error_json.h"
#include "message_peer_watch.h"
#include "shmchannel.h"
#include "shmchannel_message.h"

namespace {

using shmch::message::PeerWatch;

// Without a pidfd, how often a wait looks at the peer through /proc (as the Node binding does).
constexpr int kLivenessCheckMs = 250;
// However the peer is watched, how long a wait sleeps before it checks that the segment was not
// shrunk (an fstat): the doorbell's page may be gone, and with it the ring that would wake us.
constexpr int kSegmentCheckMs = 2000;
// While a client's open sleeps between tries, or waits for a server of many clients to make its
// connection, how often it looks at options->abort_flag.
constexpr int kAbortCheckMs = 10;
// connect_timeout_ms 0 does not wait for a server to appear; a server of many that is there
// still gets this long to make the connection (as shmch_attach() gives it).
constexpr int kConnectionMadeWithinMs = 2000;

int64_t now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

uint32_t align8(uint32_t n) { return (n + 7u) & ~7u; }

// A frame header as the frame API hands it over (docs/PROTOCOL.md §2).
struct FrameHeader {
  uint32_t length;
  uint8_t kind;
  uint8_t flags;
  uint16_t reserved;
  uint32_t id;
  uint32_t total;
};
static_assert(sizeof(FrameHeader) == SHMCH_FRAME_HEADER_SIZE, "frame header is 16 bytes");

// A message on its way out: what is left of it to write.
struct Outgoing {
  uint8_t kind = 0;
  uint32_t id = 0;
  uint32_t total = 0;           // the whole message's size, in every fragment's header
  std::vector<uint8_t> rest;    // its bytes not written yet (the last `rest.size()` of total)
  size_t written = 0;           // of rest
};

// A message, or an event, waiting to be handed over by receive.
struct Incoming {
  int kind = 0;
  uint32_t id = 0;
  std::vector<uint8_t> data;
  std::string error_message;
  std::string error_code;
  bool has_code = false;
};

}  // namespace

struct shmch_endpoint {
  shmch_role role = SHMCH_SERVER;
  shmch_channel* ch = nullptr;
  uint32_t capacity = 0;
  uint32_t max_message_size = 0;
  uint32_t max_frame_payload = 0;
  uint32_t queue_limit = 0;

  std::deque<Outgoing> queue;
  size_t queued_bytes = 0;
  bool want_writable = false;  // a send was refused with SHMCH_E_FULL
  bool writable_event = false;
  bool drained_event = false;  // the queue went from nonempty to empty (SHMCH_EV_DRAINED)

  std::vector<uint8_t> read_buffer;  // whole frames from shmch_read_announcing
  std::deque<Incoming> inbox;
  size_t inbox_bytes = 0;  // of the messages in inbox
  bool closing = false;    // in shmch_endpoint_close: what arrives is read and discarded
  Incoming current;  // what the last receive handed over (owns its bytes)

  // The message being put together from fragments.
  bool assembling = false;
  bool announced = false;  // its bytes come through shmch_read_continuation
  uint8_t assembly_kind = 0;
  uint32_t assembly_id = 0;
  uint32_t assembly_total = 0;
  std::vector<uint8_t> assembly;
  size_t assembled = 0;

  // The session with the current peer.
  bool connected = false;      // server: its HELLO came; client: from attach
  bool bye_read = false;       // its BYE came: nothing after it counts
  bool left_reported = false;  // the SHMCH_BYE event is in the inbox
  bool dropped = false;        // server: it broke the protocol; we wait for it to go
  bool peer_left_event = false;
  std::unordered_set<uint32_t> our_requests;    // ids we sent, in flight
  std::unordered_set<uint32_t> their_requests;  // ids we are handling
  uint32_t next_id = 1;

  // Why a client's endpoint ended, or what ended a server's (SHMCH_OK while it runs).
  shmch_status ended = SHMCH_OK;

  PeerWatch watch;
  uint32_t watched_pid = 0;
  int64_t next_liveness_check = 0;
  std::atomic<bool> user_woken{false};
};

namespace {

bool is_server(const shmch_endpoint* ep) { return ep->role == SHMCH_SERVER; }

void clear_queue(shmch_endpoint* ep) {
  if (!ep->queue.empty()) ep->drained_event = true;
  ep->queue.clear();
  ep->queued_bytes = 0;
  if (ep->want_writable) {
    ep->want_writable = false;
    ep->writable_event = true;
  }
}

void push_event(shmch_endpoint* ep, int kind) {
  Incoming event;
  event.kind = kind;
  ep->inbox.push_back(std::move(event));
}

// The peer is gone (its BYE, its flag, its death, a drop, a failed channel): every request in
// flight ends, and the user hears it once, as SHMCH_BYE. A client's endpoint is over.
void peer_left(shmch_endpoint* ep, shmch_status why) {
  if (!is_server(ep) && ep->ended == SHMCH_OK) ep->ended = why;
  if (ep->left_reported) return;
  ep->left_reported = true;
  bool had_session = ep->connected || !ep->our_requests.empty() || !ep->their_requests.empty();
  ep->connected = false;
  ep->our_requests.clear();
  ep->their_requests.clear();
  clear_queue(ep);
  if (had_session || !is_server(ep)) {
    push_event(ep, SHMCH_BYE);
    ep->peer_left_event = true;
  }
}

// A read or write failed: the ring can no longer be trusted (PROTOCOL §4).
void channel_failed(shmch_endpoint* ep, shmch_status s) {
  // A message we cannot hold (SHMCH_E_RESOURCE) leaves the rest of its fragments unreadable:
  // that session is over too, but a server goes on with the next client.
  if (is_server(ep) && (s == SHMCH_E_PROTOCOL || s == SHMCH_E_RESOURCE)) {
    // Drop the client: it reads nothing more from us, and we wait for it to close or die.
    if (!ep->dropped) {
      ep->dropped = true;
      shmch_drop_client(ep->ch);
    }
    peer_left(ep, s);
    return;
  }
  if (is_server(ep)) ep->ended = s;
  peer_left(ep, s);
}

// One whole message from the peer: what the protocol does with it, and what the user gets.
void on_message(shmch_endpoint* ep, uint8_t kind, uint32_t id, std::vector<uint8_t>&& data) {
  // A dropped client's frames are not read at all.
  if (ep->dropped) return;
  // Nothing may follow a BYE (PROTOCOL §2.2, §4): a server drops the client, as Node does (a
  // client's endpoint ended with the BYE already).
  if (ep->bye_read) return channel_failed(ep, SHMCH_E_PROTOCOL);
  Incoming in;
  in.kind = kind;
  in.id = id;
  switch (kind) {
    case SHMCH_HELLO:
      if (!is_server(ep) || ep->connected) return;
      ep->connected = true;
      break;
    case SHMCH_BYE:
      ep->bye_read = true;
      peer_left(ep, SHMCH_E_CLOSED);
      return;
    case SHMCH_NOTIFY:
      in.data = std::move(data);
      break;
    case SHMCH_REQUEST:
      // An id still in flight used again (PROTOCOL §4; lib/request-table.ts checkIncomingId).
      if (!ep->their_requests.insert(id).second) return channel_failed(ep, SHMCH_E_PROTOCOL);
      in.data = std::move(data);
      break;
    case SHMCH_RESPONSE:
      if (ep->our_requests.count(id) == 0) return;  // stale (after our CANCEL)
      in.data = std::move(data);
      break;
    case SHMCH_COMPLETE:
      if (ep->our_requests.erase(id) == 0) return;
      break;
    case SHMCH_ERROR:
      if (ep->our_requests.erase(id) == 0) return;
      shmch::message::decode_error(data.data(), data.size(), &in.error_message, &in.error_code, &in.has_code);
      in.data = std::move(data);
      break;
    case SHMCH_CANCEL:
      if (ep->their_requests.erase(id) == 0) return;
      break;
    default:
      return;  // the frame API refuses unknown kinds; a later version's are not ours to hand over
  }
  // Nobody will receive it: the endpoint is being freed.
  if (ep->closing) return;
  ep->inbox_bytes += in.data.size();
  ep->inbox.push_back(std::move(in));
}

void finish_assembly(shmch_endpoint* ep) {
  ep->assembling = false;
  ep->announced = false;
  std::vector<uint8_t> data;
  data.swap(ep->assembly);
  on_message(ep, ep->assembly_kind, ep->assembly_id, std::move(data));
}

// False when the message's buffer could not be allocated: nothing changed then, and the
// channel failed (its remaining fragments cannot be followed without the buffer).
bool start_assembly(shmch_endpoint* ep, const FrameHeader& h, bool announced) {
  std::vector<uint8_t> buffer;
  try {
    buffer.resize(h.total);
  } catch (const std::bad_alloc&) {
    channel_failed(ep, SHMCH_E_RESOURCE);
    return false;
  }
  ep->assembly.swap(buffer);
  ep->assembling = true;
  ep->announced = announced;
  ep->assembly_kind = h.kind;
  ep->assembly_id = h.id;
  ep->assembly_total = h.total;
  ep->assembled = 0;
  return true;
}

// Forgets a message half put together, and its buffer (which may be max_message_size).
void drop_assembly(shmch_endpoint* ep) {
  ep->assembling = ep->announced = false;
  std::vector<uint8_t>().swap(ep->assembly);
  ep->assembly_total = 0;
  ep->assembled = 0;
}

// One frame as shmch_read_announcing gave it (the frame API validated it against the message
// in progress: kind, id, total, and that it does not overrun the total).
void on_frame(shmch_endpoint* ep, const FrameHeader& h, const uint8_t* payload) {
  if (!ep->assembling) {
    if (h.length == h.total) {
      on_message(ep, h.kind, h.id, std::vector<uint8_t>(payload, payload + h.length));
      return;
    }
    if (!start_assembly(ep, h, false)) return;
  }
  memcpy(ep->assembly.data() + ep->assembled, payload, h.length);
  ep->assembled += h.length;
  if (ep->assembled == ep->assembly_total) finish_assembly(ep);
}

#ifdef SHMCH_FLAG_LOANED
// A frame flagged SHMCH_FLAG_LOANED: its payload is a descriptor the frame API validated and
// holds for us; the message is `total` bytes of the peer's pool.
shmch_status on_loaned(shmch_endpoint* ep, const FrameHeader& h, const uint8_t* payload) {
  shmch_descriptor d;
  memcpy(&d, payload, sizeof d);
  const uint8_t* loan = nullptr;
  uint32_t extent = 0;
  shmch_status s = shmch_borrowed(ep->ch, d.offset, &loan, &extent);
  if (s != SHMCH_OK) return s;
  if (d.start > extent || h.total > extent - d.start) {
    shmch_release(ep->ch, d.offset);
    return SHMCH_E_PROTOCOL;
  }
  std::vector<uint8_t> data(loan + d.start, loan + d.start + h.total);
  s = shmch_release(ep->ch, d.offset);
  on_message(ep, h.kind, h.id, std::move(data));
  return s;
}
#endif

// How much a read_frames call reads.
enum class Drain {
  kWhileEmpty,  // while the inbox is empty: the usual backpressure
  kBounded,     // a flush, which must not wait for a peer that waits for us: while the inbox
                // holds less than inbox_limit(), and at most a ring's worth per call, so that a
                // peer writing without end cannot hold the flush past its timeout
  kAll,         // the peer left: all it wrote before (the ring holds no more than that)
};

// How much a flush lets pile up in the inbox before it stops reading (the peer waits then).
size_t inbox_limit(const shmch_endpoint* ep) { return size_t(ep->max_message_size) + 4 * size_t(ep->capacity); }

bool may_read(const shmch_endpoint* ep, Drain drain, size_t read) {
  switch (drain) {
    case Drain::kWhileEmpty:
      return ep->inbox.empty();
    case Drain::kBounded:
      return read < ep->capacity && (ep->closing || ep->inbox_bytes < inbox_limit(ep));
    case Drain::kAll:
      return true;
  }
  return false;
}

void read_frames(shmch_endpoint* ep, Drain drain) {
  size_t read = 0;
  while (ep->ended == SHMCH_OK && !ep->dropped && may_read(ep, drain, read)) {
    size_t n = 0;
    shmch_status s;
    if (ep->announced) {
      s = shmch_read_continuation(ep->ch, ep->assembly.data() + ep->assembled, ep->assembly_total - ep->assembled,
                                  &n);
      if (s != SHMCH_OK) return channel_failed(ep, s);
      if (n == 0) return;
      read += n;
      ep->assembled += n;
      if (ep->assembled == ep->assembly_total) finish_assembly(ep);
      continue;
    }
    // Messages of a quarter of the ring or more are announced and copied once, into place.
    s = shmch_read_announcing(ep->ch, ep->read_buffer.data(), ep->read_buffer.size(), ep->capacity / 4, &n);
    if (s != SHMCH_OK) return channel_failed(ep, s);
    if (n == 0) return;
    read += n;
    for (size_t at = 0; at + SHMCH_FRAME_HEADER_SIZE <= n;) {
      FrameHeader h;
      memcpy(&h, ep->read_buffer.data() + at, sizeof h);
      if (h.length == 0 && h.total > 0) {
        // An announcement: never on the wire, always alone in what the read returned.
        if (!start_assembly(ep, h, true)) return;
        break;
      }
#ifdef SHMCH_FLAG_LOANED
      if ((h.flags & SHMCH_FLAG_LOANED) != 0) {
        // A whole message lent from the peer's pool (protocol 2): copied out, given back at once.
        shmch_status loan = on_loaned(ep, h, ep->read_buffer.data() + at + SHMCH_FRAME_HEADER_SIZE);
        if (loan != SHMCH_OK) return channel_failed(ep, loan);
        if (ep->dropped || ep->ended != SHMCH_OK) return;
        at += SHMCH_FRAME_HEADER_SIZE + align8(h.length);
        continue;
      }
#endif
      on_frame(ep, h, ep->read_buffer.data() + at + SHMCH_FRAME_HEADER_SIZE);
      // A frame that broke the protocol ended the session: the rest of what was read is not ours.
      if (ep->dropped || ep->ended != SHMCH_OK) return;
      at += SHMCH_FRAME_HEADER_SIZE + align8(h.length);
    }
  }
}

// Writes queued fragments while they fit.
void flush_queue(shmch_endpoint* ep) {
  bool had_queue = !ep->queue.empty();
  while (!ep->queue.empty() && ep->ended == SHMCH_OK) {
    Outgoing& out = ep->queue.front();
    for (;;) {
      size_t left = out.rest.size() - out.written;
      uint32_t length = static_cast<uint32_t>(std::min<size_t>(left, ep->max_frame_payload));
      shmch_status s = shmch_write(ep->ch, out.kind, out.id, out.total,
                                   length > 0 ? out.rest.data() + out.written : nullptr, length);
      if (s == SHMCH_E_FULL) return;
      if (s != SHMCH_OK) return channel_failed(ep, s);
      out.written += length;
      ep->queued_bytes -= length;
      if (out.written == out.rest.size()) break;
    }
    ep->queue.pop_front();
  }
  if (had_queue && ep->queue.empty()) ep->drained_event = true;
  if (ep->queue.empty() && ep->want_writable) {
    ep->want_writable = false;
    ep->writable_event = true;
  }
}

void queue_message(shmch_endpoint* ep, uint8_t kind, uint32_t id, uint32_t total, const uint8_t* rest,
                   size_t size) {
  Outgoing out;
  out.kind = kind;
  out.id = id;
  out.total = total;
  out.rest.assign(rest, rest + size);
  ep->queue.push_back(std::move(out));
  ep->queued_bytes += size;
}

bool peer_present(shmch_endpoint* ep, const shmch_info& info) {
  if (!is_server(ep)) return ep->ended == SHMCH_OK;
  return (info.state & SHMCH_STATE_CLIENT_ATTACHED) != 0;
}

// Server: the client is gone for good (closed or died): take the next one.
void accept_next(shmch_endpoint* ep) {
  if (!ep->dropped) read_frames(ep, Drain::kAll);  // what it wrote before it left
  peer_left(ep, SHMCH_E_CLOSED);
  ep->watch.stop();
  ep->watched_pid = 0;
  shmch_status s = shmch_accept_next(ep->ch);
  if (s != SHMCH_OK) {
    ep->ended = s;
    return;
  }
  ep->connected = ep->bye_read = ep->left_reported = ep->dropped = false;
  drop_assembly(ep);
}

// Has the peer left? Reads the state word every time (cheap), /proc only when the pidfd
// fired, a new client's pid appeared, or (without a pidfd) every kLivenessCheckMs.
void check_peer(shmch_endpoint* ep) {
  if (ep->ended != SHMCH_OK) return;
  shmch_info info;
  shmch_get_info(ep->ch, &info);
  int64_t now = now_ms();
  if (!is_server(ep)) {
    bool gone = (info.state & (SHMCH_STATE_SERVER_CLOSED | SHMCH_STATE_CLIENT_DROPPED)) != 0;
    if (!gone && (ep->watch.fired() || (!ep->watch.active() && now >= ep->next_liveness_check))) {
      ep->next_liveness_check = now + kLivenessCheckMs;
      gone = shmch_peer_state(ep->ch) == SHMCH_PEER_GONE;
    }
    if (gone) {
      read_frames(ep, Drain::kAll);  // what the server wrote before it left
      ep->watch.stop();
      peer_left(ep, (info.state & SHMCH_STATE_CLIENT_DROPPED) != 0 ? SHMCH_E_PROTOCOL : SHMCH_E_CLOSED);
    }
    return;
  }
  if ((info.state & SHMCH_STATE_CLIENT_ATTACHED) == 0) {
    if (ep->watch.active()) ep->watch.stop();
    ep->watched_pid = 0;
    return;
  }
  uint32_t left = SHMCH_STATE_CLIENT_ATTACHED | SHMCH_STATE_CLIENT_CLOSED;
  bool gone = (info.state & left) == left;
  if (!gone && (ep->watch.fired() || info.peer_pid != ep->watched_pid ||
                (!ep->watch.active() && now >= ep->next_liveness_check))) {
    ep->next_liveness_check = now + kLivenessCheckMs;
    // Also what makes the frame API remember a new client's pid (for shmch_open_peer_fd).
    gone = shmch_peer_state(ep->ch) == SHMCH_PEER_GONE;
    if (!gone && info.peer_pid != 0 && info.peer_pid != ep->watched_pid) {
      ep->watched_pid = info.peer_pid;
      ep->watch.start(shmch_open_peer_fd(ep->ch), ep->ch);
    }
  }
  if (gone) accept_next(ep);
}

// What every call does first: send what waits, read, look at the peer.
void pump(shmch_endpoint* ep, Drain drain) {
  if (ep->ended != SHMCH_OK) return;
  flush_queue(ep);
  read_frames(ep, drain);
  check_peer(ep);
}

shmch_status send_message(shmch_endpoint* ep, uint8_t kind, uint32_t id, const uint8_t* data, size_t size) {
  if (ep->ended != SHMCH_OK) return ep->ended;
  if (size > ep->max_message_size) return SHMCH_E_INVALID_SIZE;
  // A dropped client reads nothing more; it is not the next client's.
  if (ep->dropped) return SHMCH_E_CLOSED;
  flush_queue(ep);
  if (ep->ended != SHMCH_OK) return ep->ended;
  uint32_t total = static_cast<uint32_t>(size);
  if (!ep->queue.empty()) {
    // Empty messages (complete, cancel) are never refused: a reply must not stop half-way.
    if (size > 0 && ep->queued_bytes + size > ep->queue_limit) {
      ep->want_writable = true;
      return SHMCH_E_FULL;
    }
    queue_message(ep, kind, id, total, data, size);
    return SHMCH_OK;
  }
  size_t sent = 0;
  do {
    uint32_t length = static_cast<uint32_t>(std::min<size_t>(size - sent, ep->max_frame_payload));
    shmch_status s = shmch_write(ep->ch, kind, id, total, length > 0 ? data + sent : nullptr, length);
    if (s == SHMCH_E_FULL) {
      queue_message(ep, kind, id, total, data + sent, size - sent);
      return SHMCH_OK;
    }
    if (s != SHMCH_OK) {
      channel_failed(ep, s);
      return s;
    }
    sent += length;
  } while (sent < size);
  return SHMCH_OK;
}

// options->abort_flag: an int another thread may set at any time, so read atomically.
bool aborted(const int* flag) { return flag != nullptr && __atomic_load_n(flag, __ATOMIC_ACQUIRE) != 0; }

bool bad_data(const uint8_t* data, size_t size) { return data == nullptr && size > 0; }

shmch_status set_err(shmch_error* err, shmch_status s, const char* detail) {
  if (err != nullptr) {
    *err = shmch_error{};
    err->detail = detail;
  }
  return s;
}

// shmch_connect_finish()'s NOT_READY when the server closed or died while we waited: that
// attempt will never be finished (shmchannel.h), a new one may find the next server.
bool server_gone(const shmch_error& e) { return e.detail != nullptr && strstr(e.detail, "server gone") != nullptr; }

// Waits for a server of many clients to make the connection of `attempt` (a server of one
// client's is there at once) until `until` (no_limit: no end), in slices of kAbortCheckMs so that
// the abort flag is looked at between them. SHMCH_E_CLOSED "aborted"; SHMCH_E_NOT_READY when
// `until` passed or the server is gone; otherwise shmch_connect_finish()'s status. The caller
// cancels the attempt whatever this returns.
shmch_status finish_connect(shmch_connect_attempt* attempt, int64_t until, bool no_limit, const int* abort_flag,
                            shmch_channel** ch, shmch_error* err) {
  for (;;) {
    int64_t left = no_limit ? kAbortCheckMs : until - now_ms();
    int slice = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(left, kAbortCheckMs)));
    shmch_error e{};
    shmch_status s = shmch_connect_finish(attempt, slice, ch, &e);
    if (s != SHMCH_E_NOT_READY || server_gone(e) || (!no_limit && now_ms() >= until)) {
      if (err != nullptr) *err = e;
      return s;
    }
    if (aborted(abort_flag)) return set_err(err, SHMCH_E_CLOSED, "aborted");
  }
}

// The client's open: connects, retrying NOT_FOUND and NOT_READY (no server yet, one still
// creating its segment or freeing a slot, a server gone while we waited for it) after a pause
// until options' connect_timeout_ms, and gives up at once when its abort_flag is set. A slot
// claimed and not handed over as a channel goes back to the server (shmch_connect_cancel).
shmch_status connect_client(const char* name, const shmch_endpoint_options& o, shmch_channel** ch,
                            shmch_error* err) {
  const bool no_limit = o.connect_timeout_ms < 0;
  int64_t deadline = now_ms() + o.connect_timeout_ms;
  int backoff = 5;
  for (;;) {
    if (aborted(o.abort_flag)) return set_err(err, SHMCH_E_CLOSED, "aborted");
    shmch_connect_attempt* attempt = nullptr;
    shmch_status s = shmch_connect(name, &attempt, err);
    if (s == SHMCH_OK) {
      // connect_timeout_ms 0 waits for no server; one that is there still gets as long as
      // shmch_attach() gives it to make the connection.
      int64_t until = o.connect_timeout_ms == 0 ? now_ms() + kConnectionMadeWithinMs : deadline;
      s = finish_connect(attempt, until, no_limit, o.abort_flag, ch, err);
      shmch_connect_cancel(attempt);
      if (s == SHMCH_OK || s == SHMCH_E_CLOSED) return s;
    }
    if (s != SHMCH_E_NOT_FOUND && s != SHMCH_E_NOT_READY) return s;
    int64_t left = deadline - now_ms();
    if (!no_limit && left <= 0) return s;
    int nap = no_limit ? backoff : static_cast<int>(std::min<int64_t>(backoff, left));
    // In slices, so that an abort is seen within one of them.
    for (int slept = 0; slept < nap && !aborted(o.abort_flag); slept += kAbortCheckMs) {
      sleep_ms(std::min(kAbortCheckMs, nap - slept));
    }
    backoff = std::min(backoff * 2, 100);
  }
}

shmch_status open_endpoint(const char* name, shmch_role role, const shmch_endpoint_options* options,
                           shmch_endpoint** out, shmch_error* err) {
  shmch_endpoint_options o = options != nullptr ? *options : shmch_endpoint_options{};
  shmch_channel* ch = nullptr;
  if (role == SHMCH_SERVER) {
    shmch_options co{};  // later fields (a loan pool) stay 0: none
    co.ring_capacity = o.ring_capacity != 0 ? o.ring_capacity : SHMCH_DEFAULT_RING_CAPACITY;
    co.max_message_size = o.max_message_size != 0 ? o.max_message_size : SHMCH_DEFAULT_MAX_MESSAGE_SIZE;
    co.mode = o.mode != 0 ? o.mode : 0600;
    shmch_status s = shmch_create(name, &co, &ch, err);
    if (s != SHMCH_OK) return s;
  } else {
    shmch_status s = shmch_validate_name(name, err);
    if (s != SHMCH_OK) return s;
    s = connect_client(name, o, &ch, err);
    if (s != SHMCH_OK) return s;
    // The client's first frame (PROTOCOL §5.2): the ring is empty after the server's reset.
    s = shmch_write(ch, SHMCH_HELLO, 0, 0, nullptr, 0);
    if (s != SHMCH_OK) {
      shmch_close(ch);
      return set_err(err, s, "cannot send HELLO");
    }
  }
  shmch_endpoint* ep = new (std::nothrow) shmch_endpoint();
  if (ep == nullptr) {
    shmch_close(ch);
    return set_err(err, SHMCH_E_RESOURCE, "out of memory");
  }
  shmch_info info;
  shmch_get_info(ch, &info);
  ep->role = role;
  ep->ch = ch;
  ep->capacity = info.ring_capacity;
  ep->max_message_size = info.max_message_size;
  ep->max_frame_payload = info.max_frame_payload;
  ep->queue_limit = o.queue_limit != 0 ? o.queue_limit : info.ring_capacity;
  ep->connected = role == SHMCH_CLIENT;
  try {
    ep->read_buffer.resize(info.ring_capacity);
  } catch (const std::bad_alloc&) {
    shmch_close(ch);
    delete ep;
    return set_err(err, SHMCH_E_RESOURCE, "out of memory");
  }
  if (role == SHMCH_CLIENT) ep->watch.start(shmch_open_peer_fd(ch), ch);
  ep->next_liveness_check = now_ms() + kLivenessCheckMs;
  *out = ep;
  return SHMCH_OK;
}

// Waits on the channel for at most timeout_ms (< 0: as long as the watch allows); `flags` as
// shmch_wait_flags().
void wait_channel(shmch_endpoint* ep, int timeout_ms, int flags = 0) {
  shmch_info info;
  shmch_get_info(ep->ch, &info);
  int slice = kSegmentCheckMs;
  if (peer_present(ep, info) && !ep->watch.active()) slice = kLivenessCheckMs;
  if (timeout_ms >= 0) slice = std::min(slice, timeout_ms);
  if (shmch_wait_flags(ep->ch, slice, flags) == SHMCH_WAIT_TIMEOUT) shmch_check_segment(ep->ch);
}

// `events`: the SHMCH_EV_* bits that end the wait besides PEER_LEFT and WOKEN. One not asked
// for stays pending (WRITABLE, DRAINED) or stays true (READABLE) for a later wait.
int wait_endpoint(shmch_endpoint* ep, int timeout_ms, int events) {
  events |= SHMCH_EV_PEER_LEFT | SHMCH_EV_WOKEN;
  // Not asked for READABLE: the ring's data must not end the channel's wait either, or a
  // receiver that does not receive would spin here.
  int flags = (events & SHMCH_EV_READABLE) != 0 ? 0 : SHMCH_WAIT_IGNORE_READABLE;
  int64_t deadline = now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
  for (;;) {
    pump(ep, Drain::kWhileEmpty);
    int bits = 0;
    if ((events & SHMCH_EV_READABLE) != 0 && (!ep->inbox.empty() || ep->ended != SHMCH_OK)) {
      bits |= SHMCH_EV_READABLE;
    }
    if ((events & SHMCH_EV_WRITABLE) != 0 && ep->writable_event) {
      ep->writable_event = false;
      bits |= SHMCH_EV_WRITABLE;
    }
    if (ep->peer_left_event || (!is_server(ep) && ep->ended != SHMCH_OK)) {
      ep->peer_left_event = false;
      bits |= SHMCH_EV_PEER_LEFT;
    }
    if ((events & SHMCH_EV_DRAINED) != 0 && ep->drained_event) {
      ep->drained_event = false;
      bits |= SHMCH_EV_DRAINED;
    }
    if (ep->user_woken.exchange(false)) bits |= SHMCH_EV_WOKEN;
    if (bits != 0) return bits;
    int64_t left = deadline - now_ms();
    if (timeout_ms >= 0 && left <= 0) return SHMCH_EV_TIMEOUT;
    // A server whose channel ended is never read again: its wait without READABLE has nothing
    // but the doorbell, the wake and the timeout, which is what the channel's wait gives it.
    wait_channel(ep, timeout_ms < 0 ? -1 : static_cast<int>(left), flags);
  }
}

shmch_status flush_endpoint(shmch_endpoint* ep, int timeout_ms) {
  int64_t deadline = now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
  for (;;) {
    pump(ep, Drain::kBounded);
    if (ep->ended != SHMCH_OK) return ep->ended;
    if (ep->queue.empty()) return SHMCH_OK;
    int64_t left = deadline - now_ms();
    if (timeout_ms >= 0 && left <= 0) return SHMCH_E_FULL;
    wait_channel(ep, timeout_ms < 0 ? -1 : static_cast<int>(left));
  }
}

// The C boundary: no C++ exception may cross it. What can throw here is allocation.
template <typename F>
shmch_status guarded(F f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return SHMCH_E_RESOURCE;
  }
}

}  // namespace

extern "C" {

shmch_status shmch_endpoint_open(const char* name, shmch_role role, const shmch_endpoint_options* options,
                                 shmch_endpoint** out, shmch_error* err) {
  if (out == nullptr) return set_err(err, SHMCH_E_INVALID_ARG, "out is NULL");
  *out = nullptr;
  if (role != SHMCH_SERVER && role != SHMCH_CLIENT) return set_err(err, SHMCH_E_INVALID_ARG, "no such role");
  return guarded([&] { return open_endpoint(name, role, options, out, err); });
}

shmch_status shmch_endpoint_close(shmch_endpoint* ep, int flush_timeout_ms) {
  if (ep == nullptr) return SHMCH_E_INVALID_ARG;
  shmch_status result = guarded([&] {
    shmch_info info;
    shmch_get_info(ep->ch, &info);
    shmch_status s = SHMCH_OK;
    if (ep->ended != SHMCH_OK || ep->dropped) {
      s = SHMCH_E_CLOSED;
    } else if (is_server(ep) && !ep->connected) {
      // Nobody to send to: what is queued would wait for a client that never reads it.
      s = ep->queue.empty() ? SHMCH_OK : SHMCH_E_CLOSED;
    } else {
      ep->closing = true;
      s = flush_endpoint(ep, flush_timeout_ms);
      if (s != SHMCH_OK && s != SHMCH_E_FULL) s = SHMCH_E_CLOSED;
    }
    // BYE is the last frame (PROTOCOL §5.3, §5.5); if the ring has no room, the flag that
    // shmch_close sets says the same.
    if (s == SHMCH_OK || (is_server(ep) && !ep->connected)) {
      shmch_status bye = shmch_write(ep->ch, SHMCH_BYE, 0, 0, nullptr, 0);
      if (bye == SHMCH_E_FULL && s == SHMCH_OK) s = SHMCH_E_FULL;
    }
    return s;
  });
  ep->watch.stop();
  shmch_close(ep->ch);
  delete ep;
  return result;
}

shmch_status shmch_endpoint_notify(shmch_endpoint* ep, const uint8_t* data, size_t size) {
  if (ep == nullptr || bad_data(data, size)) return SHMCH_E_INVALID_ARG;
  return guarded([&] { return send_message(ep, SHMCH_NOTIFY, 0, data, size); });
}

shmch_status shmch_endpoint_request(shmch_endpoint* ep, const uint8_t* data, size_t size, uint32_t* id) {
  if (id != nullptr) *id = 0;
  if (ep == nullptr || id == nullptr || bad_data(data, size)) return SHMCH_E_INVALID_ARG;
  return guarded([&] {
    // Counting up, wrapping past 0, skipping ids in flight (PROTOCOL §2.3): a cancelled id is
    // not reused before all the others.
    uint32_t next = ep->next_id;
    while (next == 0 || ep->our_requests.count(next) != 0) next++;
    shmch_status s = send_message(ep, SHMCH_REQUEST, next, data, size);
    if (s != SHMCH_OK) return s;
    ep->our_requests.insert(next);
    ep->next_id = next + 1;
    *id = next;
    return SHMCH_OK;
  });
}

shmch_status shmch_endpoint_cancel(shmch_endpoint* ep, uint32_t id) {
  if (ep == nullptr) return SHMCH_E_INVALID_ARG;
  return guarded([&] {
    if (ep->our_requests.count(id) == 0) return SHMCH_E_INVALID_ARG;
    ep->our_requests.erase(id);
    return send_message(ep, SHMCH_CANCEL, id, nullptr, 0);
  });
}

shmch_status shmch_endpoint_respond(shmch_endpoint* ep, uint32_t id, const uint8_t* data, size_t size) {
  if (ep == nullptr || bad_data(data, size)) return SHMCH_E_INVALID_ARG;
  return guarded([&] {
    if (ep->their_requests.count(id) == 0) return SHMCH_E_INVALID_ARG;
    return send_message(ep, SHMCH_RESPONSE, id, data, size);
  });
}

shmch_status shmch_endpoint_complete(shmch_endpoint* ep, uint32_t id) {
  if (ep == nullptr) return SHMCH_E_INVALID_ARG;
  return guarded([&] {
    if (ep->their_requests.count(id) == 0) return SHMCH_E_INVALID_ARG;
    shmch_status s = send_message(ep, SHMCH_COMPLETE, id, nullptr, 0);
    if (s == SHMCH_OK) ep->their_requests.erase(id);
    return s;
  });
}

shmch_status shmch_endpoint_reply(shmch_endpoint* ep, uint32_t id, const uint8_t* data, size_t size) {
  if (ep == nullptr || bad_data(data, size)) return SHMCH_E_INVALID_ARG;
  return guarded([&] {
    if (ep->their_requests.count(id) == 0) return SHMCH_E_INVALID_ARG;
    shmch_status s = send_message(ep, SHMCH_RESPONSE, id, data, size);
    // The COMPLETE is empty, so never refused for a full queue once the RESPONSE was taken.
    if (s == SHMCH_OK) s = send_message(ep, SHMCH_COMPLETE, id, nullptr, 0);
    if (s == SHMCH_OK) ep->their_requests.erase(id);
    return s;
  });
}

shmch_status shmch_endpoint_fail(shmch_endpoint* ep, uint32_t id, const char* code, const char* message) {
  if (ep == nullptr) return SHMCH_E_INVALID_ARG;
  return guarded([&] {
    if (ep->their_requests.count(id) == 0) return SHMCH_E_INVALID_ARG;
    std::string payload = shmch::message::encode_error(code, message, ep->max_message_size);
    shmch_status s = send_message(ep, SHMCH_ERROR, id, reinterpret_cast<const uint8_t*>(payload.data()),
                                  payload.size());
    if (s == SHMCH_OK) ep->their_requests.erase(id);
    return s;
  });
}

shmch_status shmch_endpoint_receive(shmch_endpoint* ep, shmch_message* msg) {
  if (msg != nullptr) memset(msg, 0, sizeof *msg);
  if (ep == nullptr || msg == nullptr) return SHMCH_E_INVALID_ARG;
  return guarded([&] {
    if (ep->inbox.empty()) pump(ep, Drain::kWhileEmpty);
    if (ep->inbox.empty()) return ep->ended;
    ep->current = std::move(ep->inbox.front());
    ep->inbox.pop_front();
    ep->inbox_bytes -= ep->current.data.size();
    const Incoming& in = ep->current;
    msg->kind = in.kind;
    msg->id = in.id;
    msg->data = in.data.empty() ? nullptr : in.data.data();
    msg->size = in.data.size();
    if (in.kind == SHMCH_ERROR) {
      msg->error_message = in.error_message.c_str();
      msg->error_code = in.has_code ? in.error_code.c_str() : nullptr;
    }
    return SHMCH_OK;
  });
}

int shmch_endpoint_wait(shmch_endpoint* ep, int timeout_ms) {
  return shmch_endpoint_wait_for(ep, SHMCH_EV_READABLE | SHMCH_EV_WRITABLE | SHMCH_EV_DRAINED, timeout_ms);
}

int shmch_endpoint_wait_for(shmch_endpoint* ep, int events, int timeout_ms) {
  if (ep == nullptr) return SHMCH_EV_TIMEOUT;
  try {
    return wait_endpoint(ep, timeout_ms, events);
  } catch (const std::bad_alloc&) {
    // What could not be read stays in the ring: say so, so that receive reports it.
    return SHMCH_EV_READABLE;
  }
}

void shmch_endpoint_wake(shmch_endpoint* ep) {
  if (ep == nullptr) return;
  ep->user_woken.store(true);
  shmch_wake(ep->ch);  // keeps errno
}

shmch_status shmch_endpoint_flush(shmch_endpoint* ep, int timeout_ms) {
  if (ep == nullptr) return SHMCH_E_INVALID_ARG;
  return guarded([&] { return flush_endpoint(ep, timeout_ms); });
}

size_t shmch_endpoint_queued(const shmch_endpoint* ep) { return ep == nullptr ? 0 : ep->queued_bytes; }

int shmch_endpoint_connected(const shmch_endpoint* ep) { return ep != nullptr && ep->connected ? 1 : 0; }

shmch_channel* shmch_endpoint_channel(const shmch_endpoint* ep) { return ep == nullptr ? nullptr : ep->ch; }

}  // extern "C"
