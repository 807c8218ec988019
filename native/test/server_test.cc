// A server of many clients (PROTOCOL §7) with real processes on real /dev/shm segments: clients
// in order on their own connections, a full server, a client killed, an attempt cancelled, a
// server killed and its name reclaimed, a client that scribbles over the directory and its
// ring, a thousand connections without a leak, a version-2 header, inspect and unlink. Every
// case removes what it created; a case that hangs fails the run. Usage: server_test [part of a
// case's description: runs those alone]
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "../core/directory.h"
#include "../core/layout.h"
#include "../core/pool.h"
#include "../core/segment.h"
#include "../core/shmchannel.h"
#include "../core/truncation_guard.h"

namespace {

constexpr unsigned kCaseLimitS = 60;
constexpr uint32_t kRing = 4096;

int g_case = 0;
std::string g_name;

#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) {                                                         \
      std::printf("     %s:%d: %s\n", __FILE__, __LINE__, #cond);          \
      return false;                                                        \
    }                                                                      \
  } while (0)

std::string next_name() {
  g_name = "/shmch-server-test-" + std::to_string(getpid()) + "-" + std::to_string(++g_case);
  return g_name;
}

std::string conn_name(uint32_t slot) { return g_name + "~" + std::to_string(slot); }

bool exists(const std::string& name) { return access(("/dev/shm" + name).c_str(), F_OK) == 0; }

// Entries of /dev/shm that this case made: its name and its connections.
int shm_entries() {
  int n = 0;
  DIR* d = opendir("/dev/shm");
  if (d == nullptr) return -1;
  std::string base = g_name.substr(1);
  while (dirent* e = readdir(d)) {
    std::string f = e->d_name;
    if (f == base || f.rfind(base + "~", 0) == 0) n++;
  }
  closedir(d);
  return n;
}

int count_dir(const char* path) {
  int n = 0;
  DIR* d = opendir(path);
  if (d == nullptr) return -1;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') n++;
  }
  closedir(d);
  return n;
}

int threads() { return count_dir("/proc/self/task"); }
int open_fds() { return count_dir("/proc/self/fd"); }

int64_t now_ms() {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return int64_t(t.tv_sec) * 1000 + t.tv_nsec / 1000000;
}

void cleanup() {
  shmch_unlink(g_name.c_str(), nullptr);
  for (int i = 0; i < 8; i++) shm_unlink(conn_name(i).c_str());
}

shmch_options options() {
  shmch_options o{};
  o.ring_capacity = kRing;
  o.max_message_size = 64 * 1024;
  o.mode = 0600;
  o.pool_capacity = 0;
  return o;
}

shmch_server* create_server(uint32_t max_clients) {
  shmch_options o = options();
  shmch_server* srv = nullptr;
  shmch_error err{};
  if (shmch_server_create(g_name.c_str(), &o, max_clients, &srv, &err) != SHMCH_OK) {
    std::printf("     cannot create %s: %s\n", g_name.c_str(), err.detail != nullptr ? err.detail : "?");
    return nullptr;
  }
  return srv;
}

// ---- Children: pipes to say "go" and "ready" ----

struct Child {
  pid_t pid = -1;
  int go = -1;     // parent writes
  int ready = -1;  // parent reads
};

template <typename Body>
Child spawn(Body body) {
  int go[2];
  int ready[2];
  if (pipe(go) != 0 || pipe(ready) != 0) _exit(80);
  Child c;
  c.pid = fork();
  if (c.pid == 0) {
    close(go[1]);
    close(ready[0]);
    _exit(body(go[0], ready[1]));
  }
  close(go[0]);
  close(ready[1]);
  c.go = go[1];
  c.ready = ready[0];
  return c;
}

void say(int fd) {
  char b = 1;
  (void)!write(fd, &b, 1);
}
bool hear(int fd) {
  char b;
  return read(fd, &b, 1) == 1;
}

// Exit status of a child, or -1 if it died of a signal.
int reap(Child& c) {
  int status = 0;
  if (c.pid <= 0) return -1;
  waitpid(c.pid, &status, 0);
  close(c.go);
  close(c.ready);
  c.pid = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool exited(Child& c, int* code) {
  int status = 0;
  if (waitpid(c.pid, &status, WNOHANG) != c.pid) return false;
  close(c.go);
  close(c.ready);
  c.pid = -1;
  *code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return true;
}

// ---- Frames ----

struct Message {
  uint8_t kind;
  std::string payload;
};

// Reads whole one-frame messages; SHMCH_E_PROTOCOL and the like are returned.
shmch_status read_messages(shmch_channel* ch, std::vector<Message>* out) {
  static uint8_t buf[kRing];
  size_t got = 0;
  shmch_status s = shmch_read(ch, buf, sizeof buf, &got);
  if (s != SHMCH_OK) return s;
  for (size_t at = 0; at + SHMCH_FRAME_HEADER_SIZE <= got;) {
    uint32_t length;
    std::memcpy(&length, buf + at, 4);
    out->push_back(Message{buf[at + 4], std::string(reinterpret_cast<char*>(buf) + at + 16, length)});
    at += SHMCH_FRAME_HEADER_SIZE + ((length + 7u) & ~7u);
  }
  return SHMCH_OK;
}

shmch_status send(shmch_channel* ch, uint8_t kind, const std::string& payload) {
  auto len = static_cast<uint32_t>(payload.size());
  for (int tries = 0; tries < 2000; tries++) {
    shmch_status s = shmch_write(ch, kind, 0, len, reinterpret_cast<const uint8_t*>(payload.data()), len);
    if (s != SHMCH_E_FULL) return s;
    shmch_wait(ch, 10);
  }
  return SHMCH_E_FULL;
}

// A client's side: waits up to timeout_ms for a NOTIFY and returns its payload ("" if none).
std::string await_notify(shmch_channel* ch, int timeout_ms) {
  int64_t deadline = now_ms() + timeout_ms;
  while (now_ms() < deadline) {
    std::vector<Message> got;
    if (read_messages(ch, &got) != SHMCH_OK) return "";
    for (const Message& m : got) {
      if (m.kind == SHMCH_NOTIFY) return m.payload;
    }
    shmch_wait(ch, 50);
  }
  return "";
}

shmch_channel* attach_or_exit() {
  shmch_channel* ch = nullptr;
  shmch_error err{};
  for (int i = 0; i < 100; i++) {
    shmch_status s = shmch_attach(g_name.c_str(), &ch, &err);
    if (s == SHMCH_OK) break;
    if (s != SHMCH_E_NOT_READY && s != SHMCH_E_NOT_FOUND) _exit(90);
    usleep(10000);
  }
  if (ch == nullptr) _exit(91);
  if (send(ch, SHMCH_HELLO, "") != SHMCH_OK) _exit(92);
  return ch;
}

// ---- The server's side, one thread: wait, accept, read, left ----

struct Peer {
  shmch_channel* ch = nullptr;
  uint32_t pid = 0;
  std::vector<Message> got;
  shmch_status failure = SHMCH_OK;  // the first failed read
  bool left = false;
  bool answered = false;
};

struct Harness {
  shmch_server* srv = nullptr;
  std::map<uint32_t, Peer> peers;  // by connection id
  int refused = 0;
  // After each pump: answer a peer once it has `want` NOTIFYs, with "ack:<first payload>".
  size_t want = 0;
  // Drop (then disconnect) a connection whose read failed.
  bool drop_failed = true;

  void pump(int timeout_ms) {
    shmch_server_wait(srv, timeout_ms);
    for (;;) {
      shmch_channel* ch = nullptr;
      uint32_t id = 0, pid = 0;
      shmch_status s = shmch_server_accept(srv, &ch, &id, &pid, nullptr);
      if (s == SHMCH_E_NOT_FOUND) break;
      if (s != SHMCH_OK) {
        refused++;
        continue;
      }
      peers[id].ch = ch;
      peers[id].pid = pid;
    }
    for (auto& [id, p] : peers) {
      if (p.ch == nullptr) continue;
      if (p.failure == SHMCH_OK) {
        shmch_status s = read_messages(p.ch, &p.got);
        if (s != SHMCH_OK) {
          p.failure = s;
          if (drop_failed) {
            shmch_drop_client(p.ch);
            shmch_server_disconnect(srv, p.ch);
            p.ch = nullptr;
            continue;
          }
        }
      }
      if (want > 0 && !p.answered && notifies(p) >= want) {
        p.answered = send(p.ch, SHMCH_NOTIFY, "ack:" + first_notify(p)) == SHMCH_OK;
      }
    }
    uint32_t ids[SHMCH_MAX_CLIENTS];
    size_t n = shmch_server_left(srv, ids, SHMCH_MAX_CLIENTS);
    for (size_t i = 0; i < n; i++) {
      Peer& p = peers[ids[i]];
      p.left = true;
      if (p.ch != nullptr) {
        read_messages(p.ch, &p.got);  // what it wrote before it left
        shmch_server_disconnect(srv, p.ch);
        p.ch = nullptr;
      }
    }
  }

  static size_t notifies(const Peer& p) {
    size_t n = 0;
    for (const Message& m : p.got) n += m.kind == SHMCH_NOTIFY;
    return n;
  }
  static std::string first_notify(const Peer& p) {
    for (const Message& m : p.got) {
      if (m.kind == SHMCH_NOTIFY) return m.payload;
    }
    return "";
  }

  template <typename Done>
  bool pump_until(Done done, int limit_ms) {
    int64_t deadline = now_ms() + limit_ms;
    while (!done()) {
      if (now_ms() > deadline) return false;
      pump(50);
    }
    return true;
  }
};

// ---- Cases ----

constexpr int kNotes = 200;

// A client: HELLO, kNotes NOTIFYs "<k>:<i>", waits for its ack, BYE, close.
int ordered_client(int k) {
  shmch_channel* ch = attach_or_exit();
  for (int i = 0; i < kNotes; i++) {
    if (send(ch, SHMCH_NOTIFY, std::to_string(k) + ":" + std::to_string(i)) != SHMCH_OK) return 93;
  }
  std::string ack = await_notify(ch, 10000);
  if (ack != "ack:" + std::to_string(k) + ":0") return 94;
  send(ch, SHMCH_BYE, "");
  shmch_close(ch);
  return 0;
}

bool four_clients_each_in_order_on_its_connection() {
  next_name();
  int threads_before = threads();
  shmch_server* srv = create_server(4);
  CHECK(srv != nullptr);
  // One thread of its own: the liveness watch.
  CHECK(threads() == threads_before + 1);
  Harness h;
  h.srv = srv;
  h.want = kNotes;
  std::vector<Child> kids;
  for (int k = 0; k < 4; k++) kids.push_back(spawn([k](int, int) { return ordered_client(k); }));
  bool all_left = h.pump_until(
      [&] {
        int left = 0;
        for (auto& [id, p] : h.peers) left += p.left;
        return left == 4;
      },
      20000);
  int failed_children = 0;
  for (Child& c : kids) failed_children += reap(c) != 0;
  CHECK(all_left);
  CHECK(failed_children == 0);
  CHECK(shmch_server_connections(srv) == 0);
  // Each connection carried one client's messages, in order: HELLO, "<k>:0".."<k>:N-1", BYE.
  std::map<uint32_t, bool> pids;
  for (auto& [id, p] : h.peers) {
    CHECK(p.got.size() == kNotes + 2);
    CHECK(p.got.front().kind == SHMCH_HELLO && p.got.back().kind == SHMCH_BYE);
    std::string k = p.got[1].payload.substr(0, p.got[1].payload.find(':'));
    for (int i = 0; i < kNotes; i++) CHECK(p.got[1 + i].payload == k + ":" + std::to_string(i));
    pids[p.pid] = true;
  }
  CHECK(pids.size() == 4);
  shmch_server_close(srv);
  CHECK(threads() == threads_before);
  CHECK(shm_entries() == 0);
  return true;
}

// A client that holds its connection until told to leave (BYE, close).
int holding_client(int go, int ready) {
  shmch_channel* ch = attach_or_exit();
  say(ready);
  hear(go);
  send(ch, SHMCH_BYE, "");
  shmch_close(ch);
  return 0;
}

bool a_fifth_client_is_busy_until_one_leaves() {
  next_name();
  shmch_server* srv = create_server(4);
  CHECK(srv != nullptr);
  Harness h;
  h.srv = srv;
  std::vector<Child> kids;
  for (int k = 0; k < 4; k++) kids.push_back(spawn(holding_client));
  CHECK(h.pump_until([&] { return h.peers.size() == 4; }, 10000));
  for (Child& c : kids) CHECK(hear(c.ready));
  // The fifth: BUSY, naming slot 0's holder.
  Child fifth = spawn([](int, int) {
    shmch_channel* ch = nullptr;
    shmch_error err{};
    shmch_status s = shmch_attach(g_name.c_str(), &ch, &err);
    return s == SHMCH_E_BUSY && err.owner_pid != 0 && err.detail != nullptr &&
                   std::strstr(err.detail, "all 4 connections") != nullptr
               ? 0
               : 95;
  });
  int code = -1;
  CHECK(h.pump_until([&] { return exited(fifth, &code); }, 5000));
  CHECK(code == 0);
  // One leaves; the server disconnects it; a new client gets in.
  say(kids[0].go);
  CHECK(h.pump_until([&] { return shmch_server_connections(srv) == 3; }, 5000));
  Child sixth = spawn([](int, int) {
    shmch_channel* ch = attach_or_exit();
    send(ch, SHMCH_BYE, "");
    shmch_close(ch);
    return 0;
  });
  CHECK(h.pump_until([&] { return h.peers.size() == 5; }, 5000));
  CHECK(h.pump_until([&] { return exited(sixth, &code); }, 5000));
  CHECK(code == 0);
  for (size_t k = 1; k < kids.size(); k++) say(kids[k].go);
  CHECK(h.pump_until([&] { return shmch_server_connections(srv) == 0; }, 5000));
  for (Child& c : kids) CHECK(reap(c) == 0);
  shmch_server_close(srv);
  CHECK(shm_entries() == 0);
  return true;
}

bool a_killed_client_is_reported_within_a_second() {
  next_name();
  shmch_server* srv = create_server(4);
  CHECK(srv != nullptr);
  Harness h;
  h.srv = srv;
  Child kid = spawn(holding_client);
  CHECK(h.pump_until([&] { return h.peers.size() == 1 && !h.peers.begin()->second.got.empty(); }, 5000));
  CHECK(hear(kid.ready));
  uint32_t id = h.peers.begin()->first;
  CHECK(exists(conn_name(0)));
  int64_t t0 = now_ms();
  kill(kid.pid, SIGKILL);
  // The server waits with no timeout: only the liveness thread can end it.
  int r = shmch_server_wait(srv, -1);
  uint32_t ids[4];
  size_t n = shmch_server_left(srv, ids, 4);
  int64_t elapsed = now_ms() - t0;
  reap(kid);
  CHECK(r == SHMCH_WAIT_WOKEN);
  CHECK(n == 1 && ids[0] == id);
  CHECK(elapsed < 1000);
  CHECK(shmch_server_left(srv, ids, 4) == 0);  // once
  shmch_server_disconnect(srv, h.peers[id].ch);
  CHECK(!exists(conn_name(0)));
  size_t taken = 99;
  CHECK(shmch_inspect_clients(g_name.c_str(), nullptr, 0, &taken, nullptr) == SHMCH_OK && taken == 0);
  shmch_server_close(srv);
  CHECK(shm_entries() == 0);
  return true;
}

bool a_cancelled_attempt_gives_its_slot_back() {
  next_name();
  shmch_server* srv = create_server(2);
  CHECK(srv != nullptr);
  // Before the server made the connection: CANCELLED, the server frees the slot.
  Child kid = spawn([](int go, int ready) {
    shmch_connect_attempt* a = nullptr;
    if (shmch_connect(g_name.c_str(), &a, nullptr) != SHMCH_OK) return 90;
    say(ready);
    hear(go);
    shmch_connect_cancel(a);
    return 0;
  });
  CHECK(hear(kid.ready));
  shmch_client_info info[2];
  size_t taken = 0;
  CHECK(shmch_inspect_clients(g_name.c_str(), info, 2, &taken, nullptr) == SHMCH_OK);
  CHECK(taken == 1 && info[0].phase == SHMCH_SLOT_CLAIMED && info[0].pid == static_cast<uint32_t>(kid.pid));
  say(kid.go);
  CHECK(reap(kid) == 0);
  CHECK(shmch_server_wait(srv, 1000) == SHMCH_WAIT_WOKEN);
  shmch_channel* ch = nullptr;
  CHECK(shmch_server_accept(srv, &ch, nullptr, nullptr, nullptr) == SHMCH_E_NOT_FOUND && ch == nullptr);
  CHECK(shmch_inspect_clients(g_name.c_str(), info, 2, &taken, nullptr) == SHMCH_OK && taken == 0);
  CHECK(shm_entries() == 1);
  // After: the connection exists; the client leaves through it and the server ends it.
  shmch_connect_attempt* a = nullptr;
  CHECK(shmch_connect(g_name.c_str(), &a, nullptr) == SHMCH_OK);
  uint32_t id = 0;
  CHECK(shmch_server_accept(srv, &ch, &id, nullptr, nullptr) == SHMCH_OK);
  CHECK(exists(conn_name(0)));
  shmch_connect_cancel(a);
  uint32_t ids[2];
  CHECK(shmch_server_wait(srv, 1000) == SHMCH_WAIT_WOKEN);
  CHECK(shmch_server_left(srv, ids, 2) == 1 && ids[0] == id);
  shmch_server_disconnect(srv, ch);
  CHECK(shmch_inspect_clients(g_name.c_str(), info, 2, &taken, nullptr) == SHMCH_OK && taken == 0);
  CHECK(!exists(conn_name(0)));
  // And a finish that times out before any accept leaves nothing either.
  CHECK(shmch_connect(g_name.c_str(), &a, nullptr) == SHMCH_OK);
  shmch_channel* out = nullptr;
  CHECK(shmch_connect_finish(a, 20, &out, nullptr) == SHMCH_E_NOT_READY && out == nullptr);
  shmch_connect_cancel(a);
  shmch_server_wait(srv, 0);
  CHECK(shmch_server_accept(srv, &ch, nullptr, nullptr, nullptr) == SHMCH_E_NOT_FOUND);
  CHECK(shmch_inspect_clients(g_name.c_str(), info, 2, &taken, nullptr) == SHMCH_OK && taken == 0);
  shmch_server_close(srv);
  CHECK(shm_entries() == 0);
  return true;
}

bool a_killed_servers_name_is_reclaimed_with_its_connections() {
  next_name();
  Child server = spawn([](int go, int) {
    shmch_server* srv = create_server(4);
    if (srv == nullptr) return 90;
    Harness h;
    h.srv = srv;
    for (;;) h.pump(100);  // until killed
    (void)go;
    return 0;
  });
  std::vector<Child> kids;
  for (int k = 0; k < 3; k++) kids.push_back(spawn(holding_client));
  for (Child& c : kids) CHECK(hear(c.ready));
  CHECK(exists(conn_name(0)) && exists(conn_name(1)) && exists(conn_name(2)));
  kill(server.pid, SIGKILL);
  reap(server);
  for (Child& c : kids) kill(c.pid, SIGKILL), reap(c);
  CHECK(shm_entries() == 4);
  shmch_server* srv = create_server(2);
  CHECK(srv != nullptr);
  CHECK(shm_entries() == 1);  // the new directory alone
  shmch_server_close(srv);
  CHECK(shm_entries() == 0);
  return true;
}

// Scribbles over the directory (other slots, claims, header fields) and its own connection.
int hostile_client(int go, int ready) {
  shmch_channel* ch = attach_or_exit();
  say(ready);
  hear(go);
  shmch::Segment d;
  if (d.open(g_name.c_str(), 256, 1 << 20, nullptr) != SHMCH_OK) return 96;
  uint8_t* b = d.data();
  uint32_t me = static_cast<uint32_t>(getpid());
  uint32_t my_slot = 0;
  for (uint32_t i = 0; i < 4; i++) {
    if (*shmch::slot_word(b, i, shmch::dir::kOwnerPid) == me) my_slot = i;
  }
  std::mt19937 rng(me);
  const uint32_t nasty[] = {0, 1, 2, 3, 4, 5, 0xffffffffu, 0x7fffffffu, 1u << 22, static_cast<uint32_t>(getppid())};
  auto any = [&] { return rng() % 2 ? nasty[rng() % 10] : static_cast<uint32_t>(rng()); };
  int64_t until = now_ms() + 400;
  while (now_ms() < until) {
    uint32_t slot = rng() % 4;
    size_t field = (rng() % 6) * 4;
    if (slot != my_slot) __atomic_store_n(shmch::slot_word(b, slot, field), any(), __ATOMIC_RELEASE);
    __atomic_fetch_add(shmch::word32(b, shmch::dir::kClaims), 1, __ATOMIC_RELEASE);
    if (rng() % 8 == 0) {
      static const size_t header[] = {shmch::dir::kRingCapacity, shmch::dir::kMaxClients, shmch::dir::kMaxMessageSize,
                                      shmch::dir::kPoolCapacity, shmch::dir::kSegmentSize, shmch::dir::kDoorbell};
      __atomic_store_n(shmch::word32(b, header[rng() % 6]), any(), __ATOMIC_RELEASE);
    }
    __atomic_fetch_add(shmch::word32(b, shmch::dir::kDoorbell), 1, __ATOMIC_RELEASE);
    usleep(200);
  }
  // Its own ring: a frame of an unknown kind, published.
  shmch::Segment conn;
  if (conn.open(conn_name(my_slot).c_str(), 512, 1 << 20, nullptr) != SHMCH_OK) return 97;
  uint8_t* c = conn.data();
  shmch::SegmentLayout l = shmch::segment_layout(kRing, 0);
  uint32_t* head = shmch::word32(c, shmch::off::kRingC2S + shmch::off::kHead);
  uint32_t at = *head;
  uint8_t frame[16] = {0, 0, 0, 0, 0xEE};
  for (uint32_t i = 0; i < 16; i++) c[l.ring_c2s + ((at + i) & (kRing - 1))] = frame[i];
  __atomic_store_n(head, at + 16, __ATOMIC_RELEASE);
  __atomic_fetch_add(shmch::word32(b, shmch::dir::kDoorbell), 1, __ATOMIC_RELEASE);
  hear(go);  // stays until told
  shmch_close(ch);
  return 0;
}

bool a_hostile_client_harms_only_itself() {
  next_name();
  shmch_server* srv = create_server(4);
  CHECK(srv != nullptr);
  Harness h;
  h.srv = srv;
  h.want = kNotes;
  // The honest ones say hello and wait until the hostile one has begun.
  std::vector<Child> honest;
  for (int k = 0; k < 2; k++) {
    honest.push_back(spawn([k](int go, int ready) {
      shmch_channel* ch = attach_or_exit();
      say(ready);
      hear(go);
      for (int i = 0; i < kNotes; i++) {
        if (send(ch, SHMCH_NOTIFY, std::to_string(k) + ":" + std::to_string(i)) != SHMCH_OK) return 93;
        if (i % 20 == 0) usleep(5000);
      }
      if (await_notify(ch, 10000) != "ack:" + std::to_string(k) + ":0") return 94;
      send(ch, SHMCH_BYE, "");
      shmch_close(ch);
      return 0;
    }));
  }
  Child hostile = spawn(hostile_client);
  CHECK(h.pump_until([&] { return h.peers.size() == 3; }, 5000));
  for (Child& c : honest) CHECK(hear(c.ready));
  CHECK(hear(hostile.ready));
  uint32_t hostile_id = 0;
  for (auto& [id, p] : h.peers) {
    if (p.pid == static_cast<uint32_t>(hostile.pid)) hostile_id = id;
  }
  CHECK(hostile_id != 0);
  say(hostile.go);
  for (Child& c : honest) say(c.go);
  int codes[2] = {-1, -1};
  int done = 0;
  CHECK(h.pump_until(
      [&] {
        for (int k = 0; k < 2; k++) {
          if (honest[k].pid > 0 && exited(honest[k], &codes[k])) done++;
        }
        return done == 2 && h.peers[hostile_id].failure != SHMCH_OK;
      },
      20000));
  CHECK(codes[0] == 0 && codes[1] == 0);
  CHECK(h.peers[hostile_id].failure == SHMCH_E_PROTOCOL);
  CHECK(h.peers[hostile_id].ch == nullptr);  // dropped and disconnected
  say(hostile.go);
  CHECK(reap(hostile) == 0);
  CHECK(h.pump_until([&] { return shmch_server_connections(srv) == 0; }, 5000));
  shmch_server_close(srv);
  CHECK(shm_entries() == 0);
  return true;
}

bool a_thousand_connections_leak_nothing() {
  next_name();
  int fds_before = open_fds();
  int threads_before = threads();
  shmch_server* srv = create_server(4);
  CHECK(srv != nullptr);
  int fds_with_server = open_fds();
  for (int i = 0; i < 1000; i++) {
    shmch_connect_attempt* a = nullptr;
    CHECK(shmch_connect(g_name.c_str(), &a, nullptr) == SHMCH_OK);
    shmch_channel* conn = nullptr;
    uint32_t id = 0;
    CHECK(shmch_server_accept(srv, &conn, &id, nullptr, nullptr) == SHMCH_OK);
    shmch_channel* client = nullptr;
    CHECK(shmch_connect_finish(a, 0, &client, nullptr) == SHMCH_OK);
    shmch_connect_cancel(a);
    CHECK(send(client, SHMCH_HELLO, "") == SHMCH_OK);
    shmch_close(client);
    uint32_t ids[4];
    CHECK(shmch_server_left(srv, ids, 4) == 1 && ids[0] == id);
    shmch_server_disconnect(srv, conn);
  }
  CHECK(open_fds() == fds_with_server);
  CHECK(shm_entries() == 1);
  shmch_server_close(srv);
  CHECK(open_fds() == fds_before);
  CHECK(threads() == threads_before);
  CHECK(shm_entries() == 0);
  return true;
}

bool a_version_2_header_is_incompatible_naming_both() {
  next_name();
  shmch_options o = options();
  shmch_channel* server = nullptr;
  CHECK(shmch_create(g_name.c_str(), &o, &server, nullptr) == SHMCH_OK);
  shmch::Segment raw;
  CHECK(raw.open(g_name.c_str(), 512, 1 << 20, nullptr) == SHMCH_OK);
  shmch::write_u32(raw.data(), shmch::off::kVersion, 2);
  shmch_channel* ch = nullptr;
  shmch_error err{};
  CHECK(shmch_attach(g_name.c_str(), &ch, &err) == SHMCH_E_INCOMPATIBLE && ch == nullptr);
  CHECK(err.detail != nullptr && std::strstr(err.detail, "version 2") != nullptr &&
        std::strstr(err.detail, "version 3") != nullptr);
  shmch_close(server);
  // A directory likewise.
  shmch_server* srv = create_server(2);
  CHECK(srv != nullptr);
  CHECK(raw.open(g_name.c_str(), 256, 1 << 20, nullptr) == SHMCH_OK);
  shmch::write_u32(raw.data(), shmch::dir::kVersion, 2);
  err = shmch_error{};
  CHECK(shmch_attach(g_name.c_str(), &ch, &err) == SHMCH_E_INCOMPATIBLE);
  CHECK(err.detail != nullptr && std::strstr(err.detail, "version 2") != nullptr);
  shmch_segment_info info;
  CHECK(shmch_inspect(g_name.c_str(), &info, nullptr) == SHMCH_E_INCOMPATIBLE);
  shmch::write_u32(raw.data(), shmch::dir::kVersion, 3);
  raw.unmap();
  shmch_server_close(srv);
  CHECK(shm_entries() == 0);
  return true;
}

bool inspect_and_unlink_a_directory() {
  next_name();
  shmch_server* srv = create_server(4);
  CHECK(srv != nullptr);
  shmch_connect_attempt* a = nullptr;
  CHECK(shmch_connect(g_name.c_str(), &a, nullptr) == SHMCH_OK);
  shmch_channel* conn = nullptr;
  uint32_t id = 0, pid = 0;
  CHECK(shmch_server_accept(srv, &conn, &id, &pid, nullptr) == SHMCH_OK);
  CHECK(pid == static_cast<uint32_t>(getpid()) && id > 0);
  shmch_channel* client = nullptr;
  CHECK(shmch_connect_finish(a, 1000, &client, nullptr) == SHMCH_OK);
  shmch_connect_cancel(a);
  shmch_segment_info info;
  CHECK(shmch_inspect(g_name.c_str(), &info, nullptr) == SHMCH_OK);
  CHECK(info.kind == SHMCH_SEGMENT_DIRECTORY && info.max_clients == 4 && info.version == 3);
  CHECK(info.server_pid == static_cast<uint32_t>(getpid()) && info.server_alive == 1 && info.client_pid == 0);
  CHECK(info.connection_id == 0 && info.ring_capacity == kRing && info.state == SHMCH_STATE_SERVER_READY);
  CHECK(shmch_inspect(conn_name(0).c_str(), &info, nullptr) == SHMCH_OK);
  CHECK(info.kind == SHMCH_SEGMENT_CONNECTION && info.connection_id == id && info.max_clients == 1);
  CHECK(info.client_pid == static_cast<uint32_t>(getpid()) && info.client_alive == 1);
  shmch_client_info clients[4];
  size_t taken = 0;
  CHECK(shmch_inspect_clients(g_name.c_str(), clients, 4, &taken, nullptr) == SHMCH_OK && taken == 1);
  CHECK(clients[0].slot == 0 && clients[0].pid == static_cast<uint32_t>(getpid()));
  CHECK(clients[0].phase == SHMCH_SLOT_READY && clients[0].connection_id == id && clients[0].alive == 1);
  CHECK(shmch_inspect_clients(g_name.c_str(), nullptr, 0, &taken, nullptr) == SHMCH_OK && taken == 1);
  CHECK(shmch_inspect_clients(conn_name(0).c_str(), clients, 4, &taken, nullptr) == SHMCH_E_INCOMPATIBLE);
  CHECK(shmch_inspect_clients(g_name.c_str(), clients, 4, nullptr, nullptr) == SHMCH_E_INVALID_ARG);
  // shmch_unlink of the directory takes its connections with it.
  CHECK(shm_entries() == 2);
  CHECK(shmch_unlink(g_name.c_str(), nullptr) == SHMCH_OK);
  CHECK(shm_entries() == 0);
  shmch_close(client);
  shmch_server_close(srv);
  CHECK(shm_entries() == 0);
  return true;
}

bool a_server_of_one_client_is_reached_by_connect() {
  next_name();
  shmch_options o = options();
  shmch_channel* server = nullptr;
  CHECK(shmch_create(g_name.c_str(), &o, &server, nullptr) == SHMCH_OK);
  shmch_connect_attempt* a = nullptr;
  CHECK(shmch_connect(g_name.c_str(), &a, nullptr) == SHMCH_OK);
  shmch_channel* client = nullptr;
  CHECK(shmch_connect_finish(a, 0, &client, nullptr) == SHMCH_OK && client != nullptr);
  shmch_connect_cancel(a);
  CHECK(send(client, SHMCH_HELLO, "") == SHMCH_OK);
  std::vector<Message> got;
  CHECK(read_messages(server, &got) == SHMCH_OK && got.size() == 1 && got[0].kind == SHMCH_HELLO);
  // A cancelled attempt that was never finished leaves the slot as a client that closed.
  shmch_close(client);
  CHECK(shmch_accept_next(server) == SHMCH_OK);
  CHECK(shmch_connect(g_name.c_str(), &a, nullptr) == SHMCH_OK);
  shmch_connect_cancel(a);
  CHECK(shmch_peer_state(server) == SHMCH_PEER_GONE);
  shmch_close(server);
  CHECK(shm_entries() == 0);
  return true;
}

// A forked child of a server has its copy but not the liveness thread (nor any lock that thread
// held at the fork), and shares the epoll instance, the eventfd and the names. Closing its copy
// must neither hang (joining a thread it does not have) nor touch what is the parent's: the
// directory and connections stay, and the parent still hears of its client's death at once.
bool a_forked_childs_close_leaves_the_parents_server_alone() {
  next_name();
  shmch_server* srv = create_server(4);
  CHECK(srv != nullptr);
  Harness h;
  h.srv = srv;
  Child kid = spawn(holding_client);
  CHECK(h.pump_until([&] { return h.peers.size() == 1 && !h.peers.begin()->second.got.empty(); }, 5000));
  CHECK(hear(kid.ready));
  uint32_t id = h.peers.begin()->first;
  pid_t forked = fork();
  if (forked == 0) {
    shmch_server_close(srv);
    _exit(0);
  }
  int status = 0;
  int64_t deadline = now_ms() + 3000;
  while (waitpid(forked, &status, WNOHANG) != forked) {
    if (now_ms() > deadline) {
      kill(forked, SIGKILL);
      waitpid(forked, &status, 0);
      std::printf("     the forked child's shmch_server_close hung\n");
      kill(kid.pid, SIGKILL);
      reap(kid);
      shmch_server_close(srv);
      return false;
    }
    usleep(10000);
  }
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  CHECK(exists(g_name) && exists(conn_name(0)));
  shmch_segment_info info;
  CHECK(shmch_inspect(g_name.c_str(), &info, nullptr) == SHMCH_OK && info.server_alive == 1);
  CHECK(shmch_inspect(conn_name(0).c_str(), &info, nullptr) == SHMCH_OK);
  CHECK((info.state & SHMCH_STATE_SERVER_CLOSED) == 0);
  // The parent's watch of its client is intact: a death ends a wait with no timeout.
  int64_t t0 = now_ms();
  kill(kid.pid, SIGKILL);
  reap(kid);
  uint32_t ids[4];
  size_t n = 0;
  while (n == 0 && now_ms() - t0 < 3000) {
    shmch_server_wait(srv, 3000);
    n = shmch_server_left(srv, ids, 4);
  }
  CHECK(n == 1 && ids[0] == id);
  CHECK(now_ms() - t0 < 1000);
  shmch_server_disconnect(srv, h.peers[id].ch);
  shmch_server_close(srv);
  CHECK(shm_entries() == 0);
  return true;
}

// A stale directory (its server dead) names <name>~0 .. <name>~<max_clients - 1>; the server that
// reclaims the name removes those that are that server's connections, and nothing else: not a
// live channel that happens to be called <name>~1, not a connection of another server.
bool a_stale_directory_takes_only_its_own_connections_along() {
  next_name();
  Child dead = spawn([](int, int) { return 0; });
  uint32_t dead_pid = static_cast<uint32_t>(dead.pid);
  CHECK(reap(dead) == 0);
  // A crafted directory of 256 slots whose server is gone.
  shmch::Segment d;
  CHECK(d.create(g_name.c_str(), shmch::directory_size(256), 0600, false, nullptr) == SHMCH_OK);
  uint8_t* b = d.data();
  shmch::write_u64(b, shmch::dir::kMagic, shmch::kMagic);
  shmch::write_u32(b, shmch::dir::kVersion, SHMCH_PROTOCOL_VERSION);
  shmch::write_u32(b, shmch::dir::kHeaderSize, 256);
  shmch::write_u64(b, shmch::dir::kSegmentSize, shmch::directory_size(256));
  shmch::write_u32(b, shmch::dir::kRingCapacity, kRing);
  shmch::write_u32(b, shmch::dir::kMaxMessageSize, 64 * 1024);
  shmch::write_u32(b, shmch::dir::kMaxClients, 256);
  shmch::write_u32(b, shmch::dir::kKind, SHMCH_SEGMENT_DIRECTORY);
  shmch::write_u32(b, shmch::dir::kServerPid, dead_pid);
  shmch::write_u32(b, shmch::dir::kState, SHMCH_STATE_SERVER_READY);
  // <name>~1: a live channel of a server of one client (of this process).
  shmch_options o = options();
  shmch_channel* other = nullptr;
  CHECK(shmch_create(conn_name(1).c_str(), &o, &other, nullptr) == SHMCH_OK);
  // <name>~2: a connection of the dead server, left behind.
  shmch::Segment left;
  size_t size = shmch::segment_layout(kRing, 0).size;
  CHECK(left.create(conn_name(2).c_str(), size, 0600, false, nullptr) == SHMCH_OK);
  shmch::write_u64(left.data(), shmch::off::kMagic, shmch::kMagic);
  shmch::write_u32(left.data(), shmch::off::kVersion, SHMCH_PROTOCOL_VERSION);
  shmch::write_u32(left.data(), shmch::off::kKind, SHMCH_SEGMENT_CONNECTION);
  shmch::write_u32(left.data(), shmch::off::kServerPid, dead_pid);
  left.unmap();
  d.unmap();
  shmch_server* srv = create_server(2);
  CHECK(srv != nullptr);
  CHECK(!exists(conn_name(2)));
  bool kept = exists(conn_name(1));
  shmch_close(other);
  CHECK(kept);
  shmch_server_close(srv);
  CHECK(shm_entries() == 0);
  return true;
}

struct Case {
  const char* what;
  bool (*run)();
};


// A claim in the name of a live process that never attaches (pid 1 here; a hostile client can
// name any): the server makes the connection, and takes the slot back once nobody attached for
// kAttachMs (10 s), with the doorbell silent all along (the wait looks again by itself).
bool a_claim_nobody_attaches_to_is_taken_back() {
  next_name();
  shmch_server* srv = create_server(2);
  CHECK(srv != nullptr);
  int fd = shm_open(g_name.c_str(), O_RDWR, 0);
  CHECK(fd >= 0);
  size_t size = shmch::directory_size(2);
  auto* d = static_cast<uint8_t*>(mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  close(fd);
  CHECK(d != MAP_FAILED);
  uint32_t free_pid = 0;
  CHECK(__atomic_compare_exchange_n(shmch::slot_word(d, 0, shmch::dir::kOwnerPid), &free_pid, 1u, false,
                                    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
  __atomic_store_n(shmch::slot_word(d, 0, shmch::dir::kPhase), SHMCH_SLOT_CLAIMED, __ATOMIC_RELEASE);
  __atomic_fetch_add(shmch::word32(d, shmch::dir::kClaims), 1, __ATOMIC_RELEASE);
  munmap(d, size);
  shmch_channel* conn = nullptr;
  uint32_t id = 0;
  uint32_t pid = 0;
  int64_t start = now_ms();
  shmch_status s = SHMCH_E_NOT_FOUND;
  while (s == SHMCH_E_NOT_FOUND && now_ms() - start < 2000) {
    shmch_server_wait(srv, 100);
    s = shmch_server_accept(srv, &conn, &id, &pid, nullptr);
  }
  CHECK(s == SHMCH_OK && pid == 1);
  CHECK(exists(conn_name(0)));
  // One wait with no timeout: it must end by itself when the attach deadline passes.
  int64_t made = now_ms();
  int r = shmch_server_wait(srv, -1);
  int64_t waited = now_ms() - made;
  CHECK(r == SHMCH_WAIT_WOKEN);
  CHECK(waited >= 9000 && waited < 13000);
  uint32_t left[4];
  CHECK(shmch_server_left(srv, left, 4) == 1 && left[0] == id);
  shmch_server_disconnect(srv, conn);
  CHECK(!exists(conn_name(0)));
  shmch_client_info clients[2];
  size_t count = 9;
  CHECK(shmch_inspect_clients(g_name.c_str(), clients, 2, &count, nullptr) == SHMCH_OK && count == 0);
  shmch_server_close(srv);
  CHECK(shm_entries() == 0);
  return true;
}

const Case kCases[] = {
    {"four clients, each in order on its own connection; one thread of the server's own",
     four_clients_each_in_order_on_its_connection},
    {"a fifth client is BUSY until one leaves", a_fifth_client_is_busy_until_one_leaves},
    {"a SIGKILLed client is reported within a second, its slot and connection freed",
     a_killed_client_is_reported_within_a_second},
    {"a cancelled attempt gives its slot back, before and after the accept", a_cancelled_attempt_gives_its_slot_back},
    {"a SIGKILLed server's name is reclaimed with its connections",
     a_killed_servers_name_is_reclaimed_with_its_connections},
    {"a client scribbling over the directory and its ring harms only itself", a_hostile_client_harms_only_itself},
    {"1000 connections leave no fd, thread or /dev/shm entry", a_thousand_connections_leak_nothing},
    {"a version-2 header is INCOMPATIBLE, naming both versions", a_version_2_header_is_incompatible_naming_both},
    {"inspect, inspect_clients and unlink of a directory", inspect_and_unlink_a_directory},
    {"shmch_connect reaches a server of one client", a_server_of_one_client_is_reached_by_connect},
    {"a forked child's close of its copy leaves the parent's server alone",
     a_forked_childs_close_leaves_the_parents_server_alone},
    {"a stale directory takes only its own connections along", a_stale_directory_takes_only_its_own_connections_along},
    {"a claim nobody attaches to is taken back after 10 s, with no ring", a_claim_nobody_attaches_to_is_taken_back},
};

const char* g_running = "";

void on_case_hung(int) {
  const char prefix[] = "FAIL (hung) ";
  (void)!write(1, prefix, sizeof prefix - 1);
  (void)!write(1, g_running, std::strlen(g_running));
  (void)!write(1, "\n", 1);
  cleanup();
  _exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  int failures = 0;
  int ran = 0;
  if (shmch::install_truncation_guard() != SHMCH_OK) return 2;
  signal(SIGALRM, on_case_hung);
  signal(SIGPIPE, SIG_IGN);
  for (const Case& c : kCases) {
    // An argument runs the cases whose description contains it.
    if (argc > 1 && std::strstr(c.what, argv[1]) == nullptr) continue;
    ran++;
    g_running = c.what;
    std::fflush(stdout);
    alarm(kCaseLimitS);
    bool ok = c.run();
    alarm(0);
    cleanup();  // tests leave /dev/shm clean, failed ones too
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", c.what);
    if (!ok) failures++;
  }
  std::printf("server_test: %d of %d cases failed\n", failures, ran);
  return failures == 0 ? 0 : 1;
}
