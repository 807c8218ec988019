// A server of many clients (PROTOCOL §7): its directory, the connection it makes for each client
// that claims a slot, one wait over all of them, and the liveness thread that watches every
// client through a pidfd. What the server knows of its connections is private (slot, id, client
// pid and start time); the directory only asks it to look (§7.6): a slot without a connection of
// ours is a request or scribbles, a slot with one is ours, and what someone wrote over it is
// written back.
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <new>

#include "channel_internal.h"
#include "directory.h"
#include "doorbell.h"
#include "layout.h"
#include "liveness.h"
#include "segment.h"
#include "shmchannel.h"
#include "status.h"

using namespace shmch;

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434  // the same number on every architecture
#endif

namespace {

// A slot held by a live process in no phase a client stays in (it is between its claim and
// CLAIMED, which takes microseconds, or someone scribbled) is freed after this long.
constexpr int64_t kLimboMs = 2000;
// Without pidfds the liveness thread looks at the clients this often.
constexpr int kPollMs = 250;
// A client that has not attached to its connection this long after READY never will: its
// claim named a process that is not connecting (a hostile client can name any live one), and
// its slot is taken back (PROTOCOL §7.6).
constexpr int64_t kAttachMs = 10000;
// A wait sleeps at most this long before it looks again by itself: every client can write the
// shared doorbell, and one that writes back the value the server read undoes a ring that
// came in just before the server's futex_wait; and a client that never attaches rings nothing.
constexpr int kLookAgainMs = 1000;
// The epoll data of the control eventfd; connections use their id, never 0.
constexpr uint64_t kControl = 0;

struct Connection {
  uint32_t id = 0;
  uint32_t slot = 0;
  shmch_channel* ch = nullptr;
  uint32_t pid = 0;
  uint64_t start_time = 0;
  int pidfd = -1;  // -1: the liveness thread looks at the process instead
  int64_t ready_at_ms = 0;  // when the slot went READY (see kAttachMs)
  bool dead = false;
  bool left_reported = false;
};

int64_t now_ms() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}

}  // namespace

struct shmch_server {
  char name[256] = {0};
  Segment directory;
  uint32_t max_clients = 0;
  shmch_options options{};
  // The table of connections (by slot) and what goes with it; the liveness thread takes it too.
  std::mutex mu;
  Connection* by_slot[SHMCH_MAX_CLIENTS] = {};
  int64_t limbo_since_ms[SHMCH_MAX_CLIENTS] = {};
  std::atomic<uint32_t> connections{0};
  // A wait announced its sleep in every connection: one made meanwhile announces it too.
  bool asleep = false;
  uint32_t next_id = 1;
  uint32_t claims_seen = 0;
  // Connections the liveness thread watches by looking, not by a pidfd.
  std::atomic<uint32_t> polled{0};
  // shmch_server_wake() and every connection's shmch_wake() (PROTOCOL §7.4: one waiting thread).
  std::atomic<bool> wake_requested{false};
  uint32_t private_bell = 0;
  int epoll_fd = -1;
  int control_fd = -1;
  std::atomic<bool> stopping{false};
  pthread_t liveness{};
  bool liveness_started = false;
  // The process that created it. A child forked from it has a copy of all this but not the
  // liveness thread (nor a lock that thread held at the fork), and shares the epoll instance,
  // the eventfd and every name with the parent.
  pid_t owner = 0;
};

namespace {

uint8_t* dir_base(shmch_server* srv) { return srv->directory.data(); }

bool forked_copy(const shmch_server* srv) { return getpid() != srv->owner; }

// A forked child's shmch_server_close() or shmch_server_disconnect(): frees the child's copies
// (descriptors, mappings, memory) and nothing the parent still uses. No lock (the liveness
// thread of the parent may have held it at the fork), no epoll_ctl (the epoll instance is the
// parent's too: removing a pidfd would end the parent's watch of that client), no write to the
// directory or a connection (they are the parent's server's), no join (no thread here).
void release_forked_connection(Connection* c) {
  if (c->pidfd >= 0) close(c->pidfd);
  delete c->ch;  // unmaps, closes its descriptor; speaks on nothing
  delete c;
}
uint32_t* doorbell(shmch_server* srv) { return word32(dir_base(srv), dir::kDoorbell); }

// Ends a wait of the server from any thread of ours (async-signal-safe).
void wake_server(shmch_server* srv) {
  private_bell_ring(&srv->private_bell);
  // Without futex_waitv the wait sleeps on the doorbell alone.
  if (!private_bells_work()) doorbell_ring(doorbell(srv));
}

void kick_liveness(shmch_server* srv) {
  uint64_t one = 1;
  ssize_t ignored = write(srv->control_fd, &one, sizeof one);
  (void)ignored;
}

Connection* find_by_id(shmch_server* srv, uint64_t id) {
  for (uint32_t i = 0; i < srv->max_clients; i++) {
    if (srv->by_slot[i] != nullptr && srv->by_slot[i]->id == id) return srv->by_slot[i];
  }
  return nullptr;
}

// The liveness thread: a pidfd becomes readable when its process exits, dead or reaped alike.
void* watch_clients(void* arg) {
  shmch_server* srv = static_cast<shmch_server*>(arg);
  while (!srv->stopping.load()) {
    epoll_event events[16];
    int n = epoll_wait(srv->epoll_fd, events, 16, srv->polled.load() > 0 ? kPollMs : -1);
    if (n < 0 && errno != EINTR) break;
    bool news = false;
    std::lock_guard<std::mutex> lock(srv->mu);
    for (int i = 0; i < n; i++) {
      if (events[i].data.u64 == kControl) {
        uint64_t count;
        ssize_t ignored = read(srv->control_fd, &count, sizeof count);
        (void)ignored;
        continue;
      }
      // By id, not by pointer: the connection may have been disconnected meanwhile.
      Connection* c = find_by_id(srv, events[i].data.u64);
      if (c == nullptr || c->dead) continue;
      c->dead = true;
      // Level-triggered: the fd stays readable; it is closed when the connection ends.
      epoll_ctl(srv->epoll_fd, EPOLL_CTL_DEL, c->pidfd, nullptr);
      news = true;
    }
    if (srv->polled.load() > 0) {
      for (uint32_t i = 0; i < srv->max_clients; i++) {
        Connection* c = srv->by_slot[i];
        if (c != nullptr && c->pidfd < 0 && !c->dead && !process_alive(c->pid, c->start_time)) {
          c->dead = true;
          news = true;
        }
      }
    }
    if (news) wake_server(srv);
  }
  return nullptr;
}

// Private truth wins (PROTOCOL §7.6): the slot of a connection says what we made it say.
void write_back(shmch_server* srv, const Connection* c) {
  uint8_t* d = dir_base(srv);
  if (load_acquire(slot_word(d, c->slot, dir::kOwnerPid)) != c->pid)
    store_release(slot_word(d, c->slot, dir::kOwnerPid), c->pid);
  if (load_acquire(slot_word(d, c->slot, dir::kConnectionId)) != c->id)
    store_release(slot_word(d, c->slot, dir::kConnectionId), c->id);
  if (load_acquire(slot_word(d, c->slot, dir::kPhase)) != SHMCH_SLOT_READY)
    store_release(slot_word(d, c->slot, dir::kPhase), SHMCH_SLOT_READY);
}

// Is anything asked of the server through the directory: a slot without a connection of ours,
// taken, that is CLAIMED (make it a connection) or CANCELLED (free it)? Writes back what
// someone changed of our slots on the way. Under mu.
bool directory_asks(shmch_server* srv) {
  uint8_t* d = dir_base(srv);
  uint32_t claims = load_acquire(word32(d, dir::kClaims));
  bool asks = claims != srv->claims_seen;
  srv->claims_seen = claims;
  for (uint32_t i = 0; i < srv->max_clients; i++) {
    if (srv->by_slot[i] != nullptr) {
      write_back(srv, srv->by_slot[i]);
      continue;
    }
    uint32_t phase = load_acquire(slot_word(d, i, dir::kPhase));
    if (load_acquire(slot_word(d, i, dir::kOwnerPid)) != 0 &&
        (phase == SHMCH_SLOT_CLAIMED || phase == SHMCH_SLOT_CANCELLED)) {
      asks = true;
    }
  }
  return asks;
}

// READY long ago, and still nobody attached (see kAttachMs). Under mu.
bool never_attached(const Connection* c) {
  return (load_acquire(word32(c->ch->segment.data(), off::kState)) & SHMCH_STATE_CLIENT_ATTACHED) == 0 &&
         now_ms() - c->ready_at_ms > kAttachMs;
}

// The client of c left: it flagged its close, died, never attached, or its connection lost
// pages. Under mu.
bool client_left(const Connection* c) {
  return c->dead || peer_flagged_leave(c->ch) || c->ch->segment.lost() ||
         (c->pidfd < 0 && !process_alive(c->pid, c->start_time)) || never_attached(c);
}

enum class Look { kNothing, kReadable, kWoken };

// What ends a wait now, under mu. `requests`: look at the directory and at who left too; the
// second look, after announcing sleep, is for what the clients' rings are for.
Look look(shmch_server* srv, bool requests) {
  if (requests) {
    if (directory_asks(srv)) return Look::kWoken;
    for (uint32_t i = 0; i < srv->max_clients; i++) {
      Connection* c = srv->by_slot[i];
      if (c != nullptr && !c->left_reported && client_left(c)) return Look::kWoken;
    }
  }
  bool freed = false;
  for (uint32_t i = 0; i < srv->max_clients; i++) {
    Connection* c = srv->by_slot[i];
    if (c == nullptr) continue;
    bool failed = c->ch->failed.load(std::memory_order_relaxed) || c->ch->segment.lost();
    if (!failed && c->ch->reader.readable()) return Look::kReadable;
    if (!failed && space_freed(c->ch)) freed = true;
  }
  return freed ? Look::kWoken : Look::kNothing;
}

void set_sleeping(shmch_server* srv, uint32_t value) {
  srv->asleep = value != 0;
  for (uint32_t i = 0; i < srv->max_clients; i++) {
    if (srv->by_slot[i] != nullptr) store_seq_cst(srv->by_slot[i]->ch->own_sleeping, value);
  }
}

int to_wait_result(Look l) { return l == Look::kReadable ? SHMCH_WAIT_READABLE : SHMCH_WAIT_WOKEN; }

// Refuses the client of a slot we could not make a connection for: it reads REFUSED and frees
// the slot itself; one that cancelled meanwhile has its slot freed here.
void refuse(shmch_server* srv, uint32_t slot) {
  uint8_t* d = dir_base(srv);
  uint32_t expected = SHMCH_SLOT_CLAIMED;
  if (!__atomic_compare_exchange_n(slot_word(d, slot, dir::kPhase), &expected, SHMCH_SLOT_REFUSED, false,
                                   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    free_slot(d, slot);
  }
  doorbell_ring(slot_word(d, slot, dir::kOpenBell));
}

uint32_t take_id(shmch_server* srv) {
  for (;;) {
    uint32_t id = srv->next_id++;
    if (id != 0 && find_by_id(srv, id) == nullptr) return id;
  }
}

// Frees what needs no connection: cancelled slots, slots of dead owners, and slots left in
// limbo (see kLimboMs). Under mu.
void free_abandoned_slots(shmch_server* srv) {
  uint8_t* d = dir_base(srv);
  int64_t now = now_ms();
  for (uint32_t i = 0; i < srv->max_clients; i++) {
    if (srv->by_slot[i] != nullptr) {
      write_back(srv, srv->by_slot[i]);
      continue;
    }
    uint32_t owner = load_acquire(slot_word(d, i, dir::kOwnerPid));
    if (owner == 0) {
      srv->limbo_since_ms[i] = 0;
      continue;
    }
    uint32_t phase = load_acquire(slot_word(d, i, dir::kPhase));
    // The start time is the owner's once it stored CLAIMED after it; before, it may be half
    // written: compare the pid alone.
    uint64_t start = phase == SHMCH_SLOT_FREE ? 0 : read_u64(slot_at(d, i), dir::kOwnerStartTime);
    bool settled = phase == SHMCH_SLOT_CLAIMED || phase == SHMCH_SLOT_REFUSED;
    if (phase == SHMCH_SLOT_CANCELLED || !process_alive(owner, start)) {
      free_slot(d, i);
    } else if (!settled && srv->limbo_since_ms[i] == 0) {
      srv->limbo_since_ms[i] = now;
      continue;
    } else if (!settled && now - srv->limbo_since_ms[i] >= kLimboMs) {
      free_slot(d, i);
    } else if (!settled) {
      continue;
    }
    srv->limbo_since_ms[i] = 0;
  }
}

// Starts watching c's client: a pidfd in the liveness thread's epoll, or its look every kPollMs.
void watch(shmch_server* srv, Connection* c) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(c->pid), 0));
  if (fd >= 0) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = c->id;
    if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, fd, &ev) == 0) {
      c->pidfd = fd;
    } else {
      close(fd);
    }
  }
  if (c->pidfd < 0) {
    srv->polled.fetch_add(1);
    kick_liveness(srv);  // it waits without a timeout while it polls nobody
  }
  // The pid may have been reused just before the open: the process it names now must be the
  // one that claimed the slot.
  if (!process_alive(c->pid, c->start_time)) c->dead = true;
}

void unwatch(shmch_server* srv, Connection* c) {
  if (c->pidfd >= 0) {
    epoll_ctl(srv->epoll_fd, EPOLL_CTL_DEL, c->pidfd, nullptr);
    close(c->pidfd);
    c->pidfd = -1;
  } else {
    srv->polled.fetch_sub(1);
  }
}

enum class Made { kMade, kClientGone, kFailed };

// Makes the connection of slot `slot`, CLAIMED by a live `pid` (PROTOCOL §7.3). Under mu.
Made make_connection(shmch_server* srv, uint32_t slot, uint32_t pid, uint64_t start_time, shmch_channel** out,
                     shmch_error* err, shmch_status* status) {
  uint8_t* d = dir_base(srv);
  char name[256];
  connection_name(srv->name, slot, name, sizeof name);  // fits: the name has at most 251 bytes
  Connection* c = new (std::nothrow) Connection();
  shmch_channel* ch = c != nullptr ? new_channel(name, SHMCH_SERVER) : nullptr;
  if (ch == nullptr) {
    delete c;
    *status = fail(err, SHMCH_E_RESOURCE, ENOMEM, nullptr, nullptr);
    refuse(srv, slot);
    return Made::kFailed;
  }
  const shmch_options* o = &srv->options;
  size_t size = segment_layout(o->ring_capacity, o->pool_capacity).size;
  shmch_status s = ch->segment.create(name, size, o->mode, true, err);
  if (s == SHMCH_E_EXISTS) {
    // A stale connection of this slot (our directory is live, the name is ours to reuse).
    shm_unlink(name);
    s = ch->segment.create(name, size, o->mode, true, err);
  }
  if (s != SHMCH_OK) {
    delete ch;
    delete c;
    *status = s;
    refuse(srv, slot);
    return Made::kFailed;
  }
  c->id = take_id(srv);
  c->slot = slot;
  c->ready_at_ms = now_ms();
  c->ch = ch;
  c->pid = pid;
  c->start_time = start_time;
  ch->server_doorbell = doorbell(srv);
  ch->wake_flag = &srv->wake_requested;
  ch->wake_bell = &srv->private_bell;
  publish_header(ch, o, SHMCH_SEGMENT_CONNECTION, c->id);
  ch->peer_pid = pid;
  ch->peer_start_time = start_time;
  store_release(slot_word(d, slot, dir::kConnectionId), c->id);
  uint32_t expected = SHMCH_SLOT_CLAIMED;
  if (!__atomic_compare_exchange_n(slot_word(d, slot, dir::kPhase), &expected, SHMCH_SLOT_READY, false,
                                   __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    // The client cancelled (or someone scribbled): no connection, the slot is free again.
    shmch_close(ch);
    delete c;
    free_slot(d, slot);
    return Made::kClientGone;
  }
  ch->server = srv;
  // Made during a wait (the API says not to, but a binding may race): its client's first write
  // must still ring the sleeping server.
  if (srv->asleep) store_seq_cst(ch->own_sleeping, 1);
  doorbell_ring(slot_word(d, slot, dir::kOpenBell));
  watch(srv, c);
  srv->by_slot[slot] = c;
  srv->connections.fetch_add(1);
  *out = ch;
  return Made::kMade;
}

}  // namespace

extern "C" {

shmch_status shmch_server_create(const char* name, const shmch_options* o, uint32_t max_clients, shmch_server** out,
                                 shmch_error* err) {
  if (out == nullptr) return fail(err, SHMCH_E_INVALID_ARG, 0, nullptr, "out is NULL");
  *out = nullptr;
  shmch_status s = shmch_validate_name(name, err);
  if (s != SHMCH_OK) return s;
  if (strnlen(name, 256) > SHMCH_MAX_SERVER_NAME)
    return fail(err, SHMCH_E_INVALID_NAME, 0, nullptr, "longer than 251 bytes: its connections are <name>~<slot>");
  s = validate_options(o, err);
  if (s != SHMCH_OK) return s;
  if (max_clients == 0 || max_clients > SHMCH_MAX_CLIENTS)
    return fail(err, SHMCH_E_INVALID_ARG, 0, nullptr, "max_clients must be 1 to 256");
  shmch_server* srv = new (std::nothrow) shmch_server();
  if (srv == nullptr) return fail(err, SHMCH_E_RESOURCE, ENOMEM, nullptr, nullptr);
  srv->owner = getpid();
  std::strncpy(srv->name, name, sizeof srv->name - 1);
  srv->max_clients = max_clients;
  srv->options = *o;
  // The liveness thread first: a server that cannot watch its clients publishes nothing.
  srv->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  srv->control_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kControl;
  if (srv->epoll_fd < 0 || srv->control_fd < 0 || epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, srv->control_fd, &ev) != 0) {
    int e = errno;
    shmch_server_close(srv);
    return fail(err, status_from_errno(e), e, "epoll_create1", "cannot watch the clients");
  }
  // Signals go to the application's threads, never to ours.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int e = pthread_create(&srv->liveness, nullptr, watch_clients, srv);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (e != 0) {
    shmch_server_close(srv);
    return fail(err, SHMCH_E_RESOURCE, e, "pthread_create", "cannot start the liveness thread");
  }
  srv->liveness_started = true;
  size_t size = directory_size(max_clients);
  s = srv->directory.create(name, size, o->mode, true, err);
  if (s == SHMCH_E_EXISTS) {
    s = reclaim_if_stale(name, err);
    if (s == SHMCH_OK) s = srv->directory.create(name, size, o->mode, true, err);
  }
  if (s != SHMCH_OK) {
    shmch_server_close(srv);
    return s;
  }
  uint8_t* d = dir_base(srv);
  write_u64(d, dir::kMagic, kMagic);
  write_u32(d, dir::kVersion, SHMCH_PROTOCOL_VERSION);
  write_u32(d, dir::kHeaderSize, kDirectoryHeaderSize);
  write_u64(d, dir::kSegmentSize, size);
  write_u32(d, dir::kRingCapacity, o->ring_capacity);
  write_u32(d, dir::kMaxMessageSize, o->max_message_size);
  write_u32(d, dir::kPoolCapacity, o->pool_capacity);
  write_u32(d, dir::kMaxClients, max_clients);
  write_u32(d, dir::kKind, SHMCH_SEGMENT_DIRECTORY);
  uint32_t pid = static_cast<uint32_t>(getpid());
  write_u32(d, dir::kServerPid, pid);
  write_u64(d, dir::kServerStartTime, process_start_time(pid));
  store_release(word32(d, dir::kState), SHMCH_STATE_SERVER_READY);
  *out = srv;
  return SHMCH_OK;
}

void shmch_server_close(shmch_server* srv) {
  if (srv == nullptr) return;
  if (forked_copy(srv)) {
    for (uint32_t i = 0; i < srv->max_clients; i++) {
      if (srv->by_slot[i] != nullptr) release_forked_connection(srv->by_slot[i]);
      srv->by_slot[i] = nullptr;
    }
    if (srv->epoll_fd >= 0) close(srv->epoll_fd);
    if (srv->control_fd >= 0) close(srv->control_fd);
    delete srv;  // the directory: unmapped, never unlinked nor flagged
    return;
  }
  uint8_t* d = dir_base(srv);
  if (d != nullptr) {
    // Unlink before saying we closed: after that a new server may reclaim the name.
    if (srv->directory.is_named(srv->name)) shm_unlink(srv->name);
    __atomic_fetch_or(word32(d, dir::kState), SHMCH_STATE_SERVER_CLOSED, __ATOMIC_ACQ_REL);
    // A client waiting for its connection gives up.
    for (uint32_t i = 0; i < srv->max_clients; i++) doorbell_ring(slot_word(d, i, dir::kOpenBell));
    for (uint32_t i = 0; i < srv->max_clients; i++) {
      if (srv->by_slot[i] != nullptr) shmch_server_disconnect(srv, srv->by_slot[i]->ch);
    }
  }
  if (srv->liveness_started) {
    srv->stopping.store(true);
    kick_liveness(srv);
    pthread_join(srv->liveness, nullptr);
  }
  if (srv->epoll_fd >= 0) close(srv->epoll_fd);
  if (srv->control_fd >= 0) close(srv->control_fd);
  delete srv;
}

int shmch_server_wait(shmch_server* srv, int timeout_ms) {
  if (srv == nullptr) return SHMCH_WAIT_TIMEOUT;
  // Read the bells before looking: a ring after these reads ends the sleep below.
  uint32_t seen = __atomic_load_n(doorbell(srv), __ATOMIC_SEQ_CST);
  uint32_t private_seen = __atomic_load_n(&srv->private_bell, __ATOMIC_SEQ_CST);
  if (srv->wake_requested.exchange(false)) return SHMCH_WAIT_WOKEN;
  {
    std::lock_guard<std::mutex> lock(srv->mu);
    Look l = look(srv, true);
    if (l != Look::kNothing) return to_wait_result(l);
    set_sleeping(srv, 1);
    // Pairs with each client writer's fence between publishing its head and looking at our flag.
    fence_seq_cst();
    l = look(srv, false);
    if (l != Look::kNothing) {
      set_sleeping(srv, 0);
      return to_wait_result(l);
    }
  }
  int64_t deadline = timeout_ms < 0 ? INT64_MAX : now_ms() + timeout_ms;
  for (;;) {
    int64_t left = deadline - now_ms();
    int slice = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(left, kLookAgainMs)));
    // Not under mu: the liveness thread takes it to report a death, then rings.
    bool rang = doorbell_wait(doorbell(srv), seen, &srv->private_bell, private_seen, slice);
    std::lock_guard<std::mutex> lock(srv->mu);
    if (rang || now_ms() >= deadline) {
      set_sleeping(srv, 0);
      Look l = look(srv, false);
      if (l != Look::kNothing) return to_wait_result(l);
      return rang ? SHMCH_WAIT_WOKEN : SHMCH_WAIT_TIMEOUT;
    }
    // A slice that ended without a ring: look at everything again, still announced as asleep.
    seen = __atomic_load_n(doorbell(srv), __ATOMIC_SEQ_CST);
    private_seen = __atomic_load_n(&srv->private_bell, __ATOMIC_SEQ_CST);
    Look l = srv->wake_requested.exchange(false) ? Look::kWoken : look(srv, true);
    if (l == Look::kNothing) l = look(srv, false);
    if (l != Look::kNothing) {
      set_sleeping(srv, 0);
      return to_wait_result(l);
    }
  }
}

void shmch_server_wake(shmch_server* srv) {
  if (srv == nullptr) return;
  // A signal handler may call this: the code it interrupted may be about to read errno.
  int saved_errno = errno;
  srv->wake_requested.store(true);
  wake_server(srv);
  errno = saved_errno;
}

shmch_status shmch_server_accept(shmch_server* srv, shmch_channel** out, uint32_t* connection_id, uint32_t* client_pid,
                                 shmch_error* err) {
  if (out != nullptr) *out = nullptr;
  if (connection_id != nullptr) *connection_id = 0;
  if (client_pid != nullptr) *client_pid = 0;
  if (srv == nullptr || out == nullptr) return fail(err, SHMCH_E_INVALID_ARG, 0, nullptr, "server or out is NULL");
  std::lock_guard<std::mutex> lock(srv->mu);
  uint8_t* d = dir_base(srv);
  srv->claims_seen = load_acquire(word32(d, dir::kClaims));
  free_abandoned_slots(srv);
  for (uint32_t i = 0; i < srv->max_clients; i++) {
    if (srv->by_slot[i] != nullptr) continue;
    uint32_t pid = load_acquire(slot_word(d, i, dir::kOwnerPid));
    if (pid == 0 || load_acquire(slot_word(d, i, dir::kPhase)) != SHMCH_SLOT_CLAIMED) continue;
    uint64_t start = read_u64(slot_at(d, i), dir::kOwnerStartTime);
    if (!process_alive(pid, start)) {
      free_slot(d, i);
      continue;
    }
    shmch_status status = SHMCH_OK;
    Made made = make_connection(srv, i, pid, start, out, err, &status);
    if (made == Made::kClientGone) continue;
    if (made == Made::kFailed) return status;
    if (connection_id != nullptr) *connection_id = srv->by_slot[i]->id;
    if (client_pid != nullptr) *client_pid = pid;
    return SHMCH_OK;
  }
  return fail(err, SHMCH_E_NOT_FOUND, 0, nullptr, "no client asks");
}

size_t shmch_server_left(shmch_server* srv, uint32_t* ids, size_t capacity) {
  if (srv == nullptr || (ids == nullptr && capacity > 0)) return 0;
  std::lock_guard<std::mutex> lock(srv->mu);
  size_t n = 0;
  for (uint32_t i = 0; i < srv->max_clients && n < capacity; i++) {
    Connection* c = srv->by_slot[i];
    if (c == nullptr || c->left_reported || !client_left(c)) continue;
    c->left_reported = true;
    ids[n++] = c->id;
  }
  return n;
}

void shmch_server_disconnect(shmch_server* srv, shmch_channel* conn) {
  if (srv == nullptr || conn == nullptr) return;
  if (forked_copy(srv)) {
    for (uint32_t i = 0; i < srv->max_clients; i++) {
      if (srv->by_slot[i] != nullptr && srv->by_slot[i]->ch == conn) {
        release_forked_connection(srv->by_slot[i]);
        srv->by_slot[i] = nullptr;
        srv->connections.fetch_sub(1);
      }
    }
    return;
  }
  std::lock_guard<std::mutex> lock(srv->mu);
  Connection* c = nullptr;
  for (uint32_t i = 0; i < srv->max_clients && c == nullptr; i++) {
    if (srv->by_slot[i] != nullptr && srv->by_slot[i]->ch == conn) c = srv->by_slot[i];
  }
  if (c == nullptr) return;
  srv->by_slot[c->slot] = nullptr;
  srv->connections.fetch_sub(1);
  unwatch(srv, c);
  // As a server of one client closes (flag, ring, unlink if still ours), then the slot is free.
  conn->server = nullptr;
  shmch_close(conn);
  free_slot(dir_base(srv), c->slot);
  srv->limbo_since_ms[c->slot] = 0;
  delete c;
}

uint32_t shmch_server_connections(shmch_server* srv) {
  return srv == nullptr ? 0 : srv->connections.load();
}

}  // extern "C"
