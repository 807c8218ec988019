// The message API (shmchannel_message.h) where the specs cannot reach it well: aborting a
// client's open, SHMCH_EV_DRAINED, the endpoint's behaviour against peers that misbehave, and
// clients of a server of many clients (a shmch_server answering at the frame level).
// Each case runs its peer in a child process (forked before the parent opens anything, so the
// child copies no endpoint) on a real segment; a case that hangs fails the run.
// Usage: message_test
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "../core/message_error_json.h"
#include "../core/shmchannel.h"
#include "../core/shmchannel_message.h"

namespace {

constexpr unsigned kCaseLimitS = 30;

int g_failures = 0;
int g_case = 0;
std::string g_name;

int64_t now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void next_name() { g_name = "/shmch-msg-test-" + std::to_string(getpid()) + "-" + std::to_string(++g_case); }

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::printf("     FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);       \
      g_failures++;                                                            \
    }                                                                          \
  } while (0)

// A child running `peer`; its exit status is what the case checks at the end.
pid_t spawn(const std::function<int()>& peer) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(kCaseLimitS);
    _exit(peer());
  }
  return pid;
}

int reap(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  if (WIFSIGNALED(status)) return 1000 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

shmch_endpoint* open_client(int timeout_ms = 5000) {
  shmch_endpoint_options o{};
  o.connect_timeout_ms = timeout_ms;
  shmch_endpoint* ep = nullptr;
  if (shmch_endpoint_open(g_name.c_str(), SHMCH_CLIENT, &o, &ep, nullptr) != SHMCH_OK) return nullptr;
  return ep;
}

shmch_endpoint* open_server(uint32_t ring = 4096, uint32_t max_message = 1 << 16) {
  shmch_endpoint_options o{};
  o.ring_capacity = ring;
  o.max_message_size = max_message;
  shmch_endpoint* ep = nullptr;
  if (shmch_endpoint_open(g_name.c_str(), SHMCH_SERVER, &o, &ep, nullptr) != SHMCH_OK) return nullptr;
  return ep;
}

// The next message of `kind`, or of kind SHMCH_BYE; kind 0 if none came within timeout_ms.
shmch_message await_kind(shmch_endpoint* ep, int kind, int timeout_ms = 5000) {
  int64_t deadline = now_ms() + timeout_ms;
  shmch_message m{};
  while (now_ms() < deadline) {
    if (shmch_endpoint_receive(ep, &m) != SHMCH_OK) return shmch_message{};
    if (m.kind == kind || m.kind == SHMCH_BYE) return m;
    if (m.kind == 0) shmch_endpoint_wait(ep, 100);
  }
  return shmch_message{};
}

// A client that receives until the server leaves, sleeping `nap_ms` after each message; exits
// with 0 when it got `expected` notifications.
int slow_reader(int nap_ms, int expected) {
  shmch_endpoint* ep = open_client();
  if (ep == nullptr) return 90;
  int notes = 0;
  for (;;) {
    shmch_message m{};
    if (shmch_endpoint_receive(ep, &m) != SHMCH_OK) break;
    if (m.kind == 0) {
      shmch_endpoint_wait(ep, 1000);
      continue;
    }
    if (m.kind == SHMCH_NOTIFY) notes++;
    if (m.kind == SHMCH_BYE) break;
    if (nap_ms > 0) usleep(nap_ms * 1000);
  }
  shmch_endpoint_close(ep, 1000);
  return notes == expected ? 0 : 10;
}

// --- the cases ---------------------------------------------------------------------------

void open_abort() {
  next_name();  // no server of that name, ever
  int flag = 0;
  shmch_endpoint_options o{};
  o.connect_timeout_ms = 10000;
  o.abort_flag = &flag;
  int64_t set_at = 0;
  std::thread aborter([&] {
    usleep(200 * 1000);
    set_at = now_ms();
    __atomic_store_n(&flag, 1, __ATOMIC_RELEASE);
  });
  shmch_endpoint* ep = nullptr;
  shmch_error err{};
  shmch_status s = shmch_endpoint_open(g_name.c_str(), SHMCH_CLIENT, &o, &ep, &err);
  int64_t returned_at = now_ms();
  aborter.join();
  CHECK(s == SHMCH_E_CLOSED);
  CHECK(ep == nullptr);
  CHECK(err.detail != nullptr && std::strcmp(err.detail, "aborted") == 0);
  CHECK(returned_at - set_at < 100);

  // Set before the call: no try at all.
  int64_t start = now_ms();
  s = shmch_endpoint_open(g_name.c_str(), SHMCH_CLIENT, &o, &ep, nullptr);
  CHECK(s == SHMCH_E_CLOSED);
  CHECK(now_ms() - start < 50);

  // No limit (connect_timeout_ms < 0) is abortable too.
  flag = 0;
  o.connect_timeout_ms = -1;
  std::thread again([&] {
    usleep(100 * 1000);
    set_at = now_ms();
    __atomic_store_n(&flag, 1, __ATOMIC_RELEASE);
  });
  s = shmch_endpoint_open(g_name.c_str(), SHMCH_CLIENT, &o, &ep, nullptr);
  returned_at = now_ms();
  again.join();
  CHECK(s == SHMCH_E_CLOSED);
  CHECK(returned_at - set_at < 100);
}

void drained_event() {
  next_name();
  constexpr int kNotes = 24;
  pid_t child = spawn([] { return slow_reader(2, kNotes); });
  shmch_endpoint* server = open_server(4096);
  CHECK(server != nullptr);
  if (server == nullptr) return (void)kill(child, SIGKILL), (void)reap(child);
  CHECK(await_kind(server, SHMCH_HELLO).kind == SHMCH_HELLO);
  std::vector<uint8_t> data(1000, 7);
  for (int i = 0; i < kNotes; i++) {
    shmch_status s = shmch_endpoint_notify(server, data.data(), data.size());
    while (s == SHMCH_E_FULL) {
      shmch_endpoint_wait(server, 1000);
      s = shmch_endpoint_notify(server, data.data(), data.size());
    }
    CHECK(s == SHMCH_OK);
  }
  CHECK(shmch_endpoint_queued(server) > 0);  // a 4 KiB ring holds fewer than 4 of them
  int bits = 0;
  int64_t deadline = now_ms() + 10000;
  while ((bits & SHMCH_EV_DRAINED) == 0 && now_ms() < deadline) {
    bits = shmch_endpoint_wait(server, 5000);
    CHECK(bits != SHMCH_EV_TIMEOUT);
    if ((bits & SHMCH_EV_DRAINED) == 0) CHECK(shmch_endpoint_queued(server) > 0);
  }
  CHECK((bits & SHMCH_EV_DRAINED) != 0);
  CHECK(shmch_endpoint_queued(server) == 0);
  // Reported once per emptying.
  CHECK(shmch_endpoint_wait(server, 50) == SHMCH_EV_TIMEOUT);
  CHECK(shmch_endpoint_close(server, 5000) == SHMCH_OK);
  CHECK(reap(child) == 0);
}

// A client forks; the child closes its copy of the endpoint and exits. The parent's watch of
// its server must go on: when the server is killed, the parent's wait says PEER_LEFT.
void fork_keeps_watch() {
  next_name();
  int ready[2];
  if (pipe(ready) != 0) {
    CHECK(false);
    return;
  }
  pid_t server = spawn([&] {
    close(ready[0]);
    shmch_endpoint* ep = open_server();
    if (ep == nullptr) return 90;
    if (await_kind(ep, SHMCH_HELLO).kind != SHMCH_HELLO) return 91;
    char one = 1;
    if (write(ready[1], &one, 1) != 1) return 92;
    pause();  // reads nothing more: only its death can tell the client it left
    return 0;
  });
  close(ready[1]);
  shmch_endpoint* client = open_client();
  CHECK(client != nullptr);
  char one = 0;
  CHECK(read(ready[0], &one, 1) == 1);
  close(ready[0]);
  if (client == nullptr) return (void)kill(server, SIGKILL), (void)reap(server);
  CHECK(shmch_endpoint_wait(client, 100) == SHMCH_EV_TIMEOUT);  // the watch thread is running

  pid_t copy = spawn([&] {
    shmch_endpoint_close(client, 0);
    return 0;
  });
  CHECK(reap(copy) == 0);
  kill(server, SIGKILL);
  CHECK(reap(server) == 1000 + SIGKILL);
  int64_t start = now_ms();
  int bits = shmch_endpoint_wait(client, 5000);
  // A client waits on the channel in slices of 2 s while its watch is active: a dead watch
  // would leave only the timeout.
  CHECK((bits & SHMCH_EV_PEER_LEFT) != 0);
  CHECK(now_ms() - start < 1000);
  shmch_endpoint_close(client, 0);
  shm_unlink(g_name.c_str());  // the killed server could not
}

// A client that notifies without end and never reads: a flush or close of the server (whose
// queue can then never drain) must return at its timeout, and must not pile up the flood.
void flush_against_flood() {
  next_name();
  pid_t flood = spawn([] {
    shmch_endpoint* ep = open_client();
    if (ep == nullptr) return 90;
    std::vector<uint8_t> data(1000, 3);
    int64_t until = now_ms() + 8000;
    while (now_ms() < until) {
      shmch_status s = shmch_endpoint_notify(ep, data.data(), data.size());
      if (s != SHMCH_OK && s != SHMCH_E_FULL) break;
    }
    shmch_endpoint_close(ep, 0);
    return 0;
  });
  shmch_endpoint* server = open_server(4096, 16384);
  CHECK(server != nullptr);
  if (server == nullptr) return (void)kill(flood, SIGKILL), (void)reap(flood);
  CHECK(await_kind(server, SHMCH_HELLO).kind == SHMCH_HELLO);
  std::vector<uint8_t> big(12000, 9);  // three rings: stays queued, as the client never reads
  CHECK(shmch_endpoint_notify(server, big.data(), big.size()) == SHMCH_OK);
  CHECK(shmch_endpoint_queued(server) > 0);
  usleep(100 * 1000);  // the flood is under way

  int64_t start = now_ms();
  CHECK(shmch_endpoint_flush(server, 300) == SHMCH_E_FULL);
  CHECK(now_ms() - start < 1500);
  // What the flush kept for receive is bounded (max_message_size + 4 rings = 32 KiB). Count it
  // with the flood stopped: a wait of 0 reads the ring again once the inbox is empty, and a
  // running flood would refill it as fast as the count drains it.
  kill(flood, SIGSTOP);
  usleep(20 * 1000);
  int kept = 0;
  for (shmch_message m{}; kept < 100000; kept++) {
    if ((shmch_endpoint_wait(server, 0) & SHMCH_EV_READABLE) == 0) break;
    if (shmch_endpoint_receive(server, &m) != SHMCH_OK || m.kind != SHMCH_NOTIFY) break;
  }
  CHECK(kept < 60);

  start = now_ms();
  CHECK(shmch_endpoint_close(server, 300) == SHMCH_E_FULL);
  CHECK(now_ms() - start < 1500);
  kill(flood, SIGKILL);
  reap(flood);
}

// A client on the frame API that sends `frames` after its HELLO, then waits for the parent's
// word before it detaches (so the drop flag is still to be seen).
struct RawFrame {
  uint8_t kind;
  uint32_t id;
};
pid_t raw_client(std::vector<RawFrame> frames, int go) {
  return spawn([frames, go] {
    shmch_channel* ch = nullptr;
    int64_t until = now_ms() + 5000;
    while (shmch_attach(g_name.c_str(), &ch, nullptr) != SHMCH_OK) {
      if (now_ms() > until) return 90;
      usleep(5000);
    }
    if (shmch_write(ch, SHMCH_HELLO, 0, 0, nullptr, 0) != SHMCH_OK) return 91;
    for (const RawFrame& f : frames) {
      const uint8_t byte = 'x';
      bool data = f.kind == SHMCH_REQUEST || f.kind == SHMCH_NOTIFY;
      if (shmch_write(ch, f.kind, f.id, data ? 1 : 0, data ? &byte : nullptr, data ? 1 : 0) != SHMCH_OK) return 92;
    }
    char one;
    if (read(go, &one, 1) != 1) return 93;
    shmch_close(ch);
    return 0;
  });
}

// The kinds the server hands over, up to its SHMCH_BYE; and whether the client was dropped.
void protocol_case(std::vector<RawFrame> frames, std::vector<int> expected_kinds, bool expect_drop) {
  next_name();
  int go[2];
  if (pipe(go) != 0) {
    CHECK(false);
    return;
  }
  pid_t client = raw_client(frames, go[0]);
  close(go[0]);
  shmch_endpoint* server = open_server();
  CHECK(server != nullptr);
  std::vector<int> kinds;
  int64_t deadline = now_ms() + 5000;
  while (server != nullptr && now_ms() < deadline) {
    shmch_message m{};
    if (shmch_endpoint_receive(server, &m) != SHMCH_OK) break;
    if (m.kind == 0) {
      shmch_endpoint_wait(server, 100);
      continue;
    }
    kinds.push_back(m.kind);
    if (m.kind == SHMCH_BYE) break;
  }
  // Anything handed over after the BYE (a second request, say) would show here too.
  if (server != nullptr && kinds.size() == expected_kinds.size()) {
    shmch_message m{};
    usleep(50 * 1000);
    if (shmch_endpoint_receive(server, &m) == SHMCH_OK && m.kind != 0) kinds.push_back(m.kind);
  }
  CHECK(kinds == expected_kinds);
  if (server != nullptr) {
    shmch_info info{};
    shmch_get_info(shmch_endpoint_channel(server), &info);
    CHECK(((info.state & SHMCH_STATE_CLIENT_DROPPED) != 0) == expect_drop);
  }
  char one = 1;
  CHECK(write(go[1], &one, 1) == 1);
  close(go[1]);
  CHECK(reap(client) == 0);
  if (server != nullptr) shmch_endpoint_close(server, 0);
}

void request_id_reused() {
  protocol_case({{SHMCH_REQUEST, 5}, {SHMCH_REQUEST, 5}}, {SHMCH_HELLO, SHMCH_REQUEST, SHMCH_BYE}, true);
  // Not in flight any more (cancelled): the id may come again.
  protocol_case({{SHMCH_REQUEST, 5}, {SHMCH_CANCEL, 5}, {SHMCH_REQUEST, 5}, {SHMCH_BYE, 0}},
                {SHMCH_HELLO, SHMCH_REQUEST, SHMCH_CANCEL, SHMCH_REQUEST, SHMCH_BYE}, false);
}

void frame_after_bye() {
  protocol_case({{SHMCH_BYE, 0}, {SHMCH_NOTIFY, 0}}, {SHMCH_HELLO, SHMCH_BYE}, true);
}

// What decode_error() makes of a payload: "message|code" ("(none)" without a code).
std::string decoded(const std::string& payload) {
  std::string message, code;
  bool has_code = false;
  shmch::message::decode_error(reinterpret_cast<const uint8_t*>(payload.data()), payload.size(), &message, &code,
                               &has_code);
  return message + "|" + (has_code ? code : "(none)");
}

void error_strings() {
  const std::string fffd = "\xEF\xBF\xBD";
  // What was right stays right.
  CHECK(decoded(R"({"code":"E_X","message":"a \"b\" \u2713 \ud83d\ude00"})") == "a \"b\" \u2713 \U0001F600|E_X");
  CHECK(decoded("not json \xE2\x9C\x93") == "not json \xE2\x9C\x93|(none)");
  // A NUL from a JSON escape, in the code too.
  CHECK(decoded(R"({"code":"E\u0000X","message":"a\u0000b"})") == "a" + fffd + "b|E" + fffd + "X");
  // A payload that is not JSON, with a NUL and invalid UTF-8: a lone continuation byte, an
  // overlong form, a surrogate encoded, a sequence cut short by the end.
  CHECK(decoded(std::string("x\0y", 3)) == "x" + fffd + "y|(none)");
  CHECK(decoded("a\x80" "b") == "a" + fffd + "b|(none)");
  CHECK(decoded("\xC0\xAF") == fffd + fffd + "|(none)");
  CHECK(decoded("\xED\xA0\x80") == fffd + fffd + fffd + "|(none)");
  CHECK(decoded("ok\xE2\x9C") == "ok" + fffd + "|(none)");
  CHECK(decoded("\xF4\x90\x80\x80z") == fffd + fffd + fffd + fffd + "z|(none)");
  // Raw invalid bytes inside a JSON string.
  CHECK(decoded("{\"message\":\"m\xFF\"}") == "m" + fffd + "|(none)");
  // Every result is a C string: no NUL before its end.
  CHECK(std::strlen(decoded(std::string("\0\0", 2)).c_str()) == 2 * fffd.size() + 7);
}

// A receiver that stops receiving (its consumer is slow) while its own messages are queued
// out: shmch_endpoint_wait_for() without READABLE sleeps through the peer's unread messages
// until the queue moves, then the messages are all still there to receive.
void wait_for_paused() {
  next_name();
  constexpr int kTheirs = 8;
  pid_t pid = spawn([] {
    shmch_endpoint* ep = open_client();
    if (ep == nullptr) return 90;
    std::vector<uint8_t> data(512, 'c');
    // Two batches that each fit the ring: the server reads the first in one go, the second
    // waits in the ring, unread, while the server is paused. Nothing of ours is queued, so
    // nothing makes us read the server's messages before the nap.
    for (int i = 0; i < kTheirs; i++) {
      if (i == kTheirs / 2) usleep(150 * 1000);
      if (shmch_endpoint_notify(ep, data.data(), data.size()) != SHMCH_OK) return 91;
      if (shmch_endpoint_queued(ep) != 0) return 92;
    }
    usleep(600 * 1000);  // the server's queue stays stuck this long
    int notes = 0;
    for (;;) {
      shmch_message m{};
      if (shmch_endpoint_receive(ep, &m) != SHMCH_OK) break;
      if (m.kind == 0) {
        shmch_endpoint_wait(ep, 1000);
        continue;
      }
      if (m.kind == SHMCH_NOTIFY) notes++;
      if (m.kind == SHMCH_BYE) break;
    }
    shmch_endpoint_close(ep, 1000);
    return notes;
  });
  shmch_endpoint* server = open_server();
  CHECK(server != nullptr);
  if (server == nullptr) {
    kill(pid, SIGKILL);
    reap(pid);
    return;
  }
  int received = await_kind(server, SHMCH_NOTIFY).kind == SHMCH_NOTIFY ? 1 : 0;
  CHECK(received == 1);
  // Ours: until some of it is queued, and a few more.
  std::vector<uint8_t> data(512, 's');
  int sent = 0;
  int extra = 0;
  while (extra < 3 && sent < 64) {
    CHECK(shmch_endpoint_notify(server, data.data(), data.size()) == SHMCH_OK);
    sent++;
    if (shmch_endpoint_queued(server) > 0) extra++;
  }
  CHECK(shmch_endpoint_queued(server) > 0);
  shmch_endpoint_wake(server);
  CHECK(shmch_endpoint_wait_for(server, SHMCH_EV_WRITABLE | SHMCH_EV_DRAINED, 1000) == SHMCH_EV_WOKEN);
  int64_t start = now_ms();
  CHECK(shmch_endpoint_wait_for(server, SHMCH_EV_WRITABLE | SHMCH_EV_DRAINED, 100) == SHMCH_EV_TIMEOUT);
  CHECK(now_ms() - start >= 90);
  // Sleeps until the client reads (no READABLE, no spinning), then reports the queue empty.
  int waits = 0;
  bool drained = false;
  struct timespec cpu0, cpu1;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu0);
  while (!drained && now_ms() - start < 10000) {
    int bits = shmch_endpoint_wait_for(server, SHMCH_EV_DRAINED, 10000);
    waits++;
    CHECK((bits & (SHMCH_EV_READABLE | SHMCH_EV_WRITABLE | SHMCH_EV_PEER_LEFT)) == 0);
    drained = (bits & SHMCH_EV_DRAINED) != 0;
  }
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu1);
  CHECK(drained);
  CHECK(now_ms() - start >= 400);
  // Asleep, not spinning inside the wait: a few milliseconds of CPU over half a second.
  CHECK((cpu1.tv_sec - cpu0.tv_sec) * 1000 + (cpu1.tv_nsec - cpu0.tv_nsec) / 1000000 < 150);
  CHECK(waits <= 3);
  CHECK(shmch_endpoint_queued(server) == 0);
  // Everything the client sent is still there.
  while (received < kTheirs) {
    shmch_message m = await_kind(server, SHMCH_NOTIFY);
    if (m.kind != SHMCH_NOTIFY) break;
    received++;
  }
  CHECK(received == kTheirs);
  shmch_endpoint_close(server, 1000);
  CHECK(reap(pid) == sent);
}

// ---- A server of many clients (PROTOCOL §7) at the frame level ----

// Answers each REQUEST "x" of a connection with a RESPONSE "pong:x" and a COMPLETE, but only
// once `hellos_needed` connections said HELLO, so that the clients are connected at once.
struct ManyServer {
  struct Conn {
    shmch_channel* ch = nullptr;
    uint32_t pid = 0;
    bool hello = false;
    std::vector<std::pair<uint32_t, std::string>> requests;  // not answered yet
  };
  shmch_server* srv = nullptr;
  std::map<uint32_t, Conn> conns;  // by connection id
  size_t hellos_needed = 0;
  size_t hellos = 0;
  size_t most_connected = 0;
  int answered = 0;
  int left = 0;
  bool broken = false;  // a read, write or accept failed

  void pump(int timeout_ms) {
    shmch_server_wait(srv, timeout_ms);
    for (;;) {
      shmch_channel* ch = nullptr;
      uint32_t id = 0, pid = 0;
      shmch_status s = shmch_server_accept(srv, &ch, &id, &pid, nullptr);
      if (s == SHMCH_E_NOT_FOUND) break;
      if (s != SHMCH_OK) {
        broken = true;
        continue;
      }
      conns[id].ch = ch;
      conns[id].pid = pid;
    }
    most_connected = std::max<size_t>(most_connected, shmch_server_connections(srv));
    for (auto& entry : conns) read(entry.second);
    for (auto& entry : conns) {
      Conn& c = entry.second;
      if (c.ch == nullptr || hellos < hellos_needed) continue;
      for (const auto& [rid, payload] : c.requests) {
        std::string pong = "pong:" + payload;
        auto len = static_cast<uint32_t>(pong.size());
        if (shmch_write(c.ch, SHMCH_RESPONSE, rid, len, reinterpret_cast<const uint8_t*>(pong.data()), len) !=
                SHMCH_OK ||
            shmch_write(c.ch, SHMCH_COMPLETE, rid, 0, nullptr, 0) != SHMCH_OK) {
          broken = true;
        }
        answered++;
      }
      c.requests.clear();
    }
    uint32_t ids[SHMCH_MAX_CLIENTS];
    size_t n = shmch_server_left(srv, ids, SHMCH_MAX_CLIENTS);
    for (size_t i = 0; i < n; i++) {
      Conn& c = conns[ids[i]];
      if (c.ch == nullptr) continue;
      read(c);  // what it wrote before it left
      shmch_server_disconnect(srv, c.ch);
      c.ch = nullptr;
      left++;
    }
  }

  void read(Conn& c) {
    if (c.ch == nullptr) return;
    static uint8_t buf[4096];
    size_t got = 0;
    if (shmch_read(c.ch, buf, sizeof buf, &got) != SHMCH_OK) {
      broken = true;
      return;
    }
    for (size_t at = 0; at + SHMCH_FRAME_HEADER_SIZE <= got;) {
      uint32_t length, id;
      std::memcpy(&length, buf + at, 4);
      std::memcpy(&id, buf + at + 8, 4);
      uint8_t kind = buf[at + 4];
      if (kind == SHMCH_HELLO && !c.hello) {
        c.hello = true;
        hellos++;
      }
      if (kind == SHMCH_REQUEST) {
        c.requests.emplace_back(id, std::string(reinterpret_cast<char*>(buf) + at + 16, length));
      }
      at += SHMCH_FRAME_HEADER_SIZE + ((length + 7u) & ~7u);
    }
  }

  void close() {
    for (auto& entry : conns) {
      if (entry.second.ch != nullptr) shmch_server_disconnect(srv, entry.second.ch);
      entry.second.ch = nullptr;
    }
    shmch_server_close(srv);
    srv = nullptr;
  }
};

shmch_server* create_many(uint32_t max_clients) {
  shmch_options o{};
  o.ring_capacity = 4096;
  o.max_message_size = 1 << 16;
  o.mode = 0600;
  shmch_server* srv = nullptr;
  if (shmch_server_create(g_name.c_str(), &o, max_clients, &srv, nullptr) != SHMCH_OK) return nullptr;
  return srv;
}

// A message-API client of a server of many: one request "<k>", its answer "pong:<k>" and its
// end, then close. 0 if all went so.
int round_trip_client(int k) {
  shmch_endpoint* ep = open_client(10000);
  if (ep == nullptr) return 90;
  std::string ask = std::to_string(k);
  uint32_t id = 0;
  if (shmch_endpoint_request(ep, reinterpret_cast<const uint8_t*>(ask.data()), ask.size(), &id) != SHMCH_OK) return 91;
  shmch_message m = await_kind(ep, SHMCH_RESPONSE, 10000);
  if (m.kind != SHMCH_RESPONSE || m.id != id) return 92;
  if (std::string(reinterpret_cast<const char*>(m.data), m.size) != "pong:" + ask) return 93;
  m = await_kind(ep, SHMCH_COMPLETE, 10000);
  if (m.kind != SHMCH_COMPLETE || m.id != id) return 94;
  return shmch_endpoint_close(ep, 1000) == SHMCH_OK ? 0 : 95;
}

// Two message-API clients of one server of 4 clients, connected at once (the server answers
// neither before both said HELLO), each with its round trip on its own connection.
void many_clients_round_trips() {
  next_name();
  pid_t a = spawn([] { return round_trip_client(1); });
  pid_t b = spawn([] { return round_trip_client(2); });
  ManyServer server;
  server.srv = create_many(4);
  server.hellos_needed = 2;
  CHECK(server.srv != nullptr);
  if (server.srv == nullptr) {
    kill(a, SIGKILL);
    kill(b, SIGKILL);
    reap(a);
    reap(b);
    return;
  }
  int64_t deadline = now_ms() + 15000;
  while ((server.answered < 2 || server.left < 2) && now_ms() < deadline) server.pump(50);
  CHECK(server.answered == 2);
  CHECK(server.left == 2);
  CHECK(server.most_connected == 2);
  CHECK(!server.broken);
  CHECK(server.conns.size() == 2);
  std::vector<uint32_t> pids;
  for (const auto& entry : server.conns) pids.push_back(entry.second.pid);
  CHECK(reap(a) == 0);
  CHECK(reap(b) == 0);
  CHECK(pids.size() == 2 && pids[0] != pids[1]);
  for (uint32_t pid : pids) CHECK(pid == uint32_t(a) || pid == uint32_t(b));
  server.close();
}

// A client's open with abort_flag set `after_ms` into it, timeout `timeout_ms`: its status,
// and how long it took to return after the flag was set (*late_ms) and in all (*took_ms).
shmch_status open_aborted(int timeout_ms, int after_ms, int64_t* late_ms, int64_t* took_ms, shmch_error* err) {
  int flag = 0;
  shmch_endpoint_options o{};
  o.connect_timeout_ms = timeout_ms;
  o.abort_flag = &flag;
  int64_t set_at = 0;
  std::thread aborter([&] {
    usleep(after_ms * 1000);
    set_at = now_ms();
    __atomic_store_n(&flag, 1, __ATOMIC_RELEASE);
  });
  shmch_endpoint* ep = nullptr;
  int64_t start = now_ms();
  shmch_status s = shmch_endpoint_open(g_name.c_str(), SHMCH_CLIENT, &o, &ep, err);
  int64_t returned_at = now_ms();
  aborter.join();
  if (ep != nullptr) shmch_endpoint_close(ep, 0);
  *late_ms = returned_at - set_at;
  *took_ms = returned_at - start;
  return s;
}

// A client waiting for a server of many that never makes its connection (its process is
// stopped): the abort ends the open promptly (shmch_attach() would sit 2 s per try, deaf to
// the flag), its claimed slot goes back to the server, and a timeout is kept as well.
void many_clients_abort() {
  next_name();
  int ready[2];
  int stop[2];
  if (pipe(ready) != 0 || pipe(stop) != 0) {
    CHECK(false);
    return;
  }
  pid_t server = spawn([&] {
    close(ready[0]);
    close(stop[1]);
    ManyServer many;
    many.srv = create_many(4);
    if (many.srv == nullptr) return 90;
    char one = 1;
    if (write(ready[1], &one, 1) != 1) return 91;
    // Serves until the parent closes `stop`.
    for (;;) {
      struct pollfd p = {stop[0], POLLIN, 0};
      if (poll(&p, 1, 0) != 0) break;
      many.pump(20);
    }
    int answered = many.answered;
    bool broken = many.broken;
    many.close();
    return broken ? 92 : answered;
  });
  close(ready[1]);
  close(stop[0]);
  char one = 0;
  CHECK(read(ready[0], &one, 1) == 1);
  close(ready[0]);
  kill(server, SIGSTOP);
  int status = 0;
  CHECK(waitpid(server, &status, WUNTRACED) == server && WIFSTOPPED(status));

  int64_t late = 0, took = 0;
  shmch_error err{};
  // A long wait, and no limit: each ends within 200 ms of the flag, having waited till then.
  shmch_status s = open_aborted(10000, 300, &late, &took, &err);
  CHECK(s == SHMCH_E_CLOSED);
  CHECK(err.detail != nullptr && std::strcmp(err.detail, "aborted") == 0);
  CHECK(late < 200);
  CHECK(took >= 250);
  s = open_aborted(-1, 300, &late, &took, nullptr);
  CHECK(s == SHMCH_E_CLOSED);
  CHECK(late < 200);
  CHECK(took >= 250);

  // Its timeout, when shorter than shmch_attach()'s 2 s: NOT_READY, then.
  shmch_endpoint_options o{};
  o.connect_timeout_ms = 300;
  shmch_endpoint* ep = nullptr;
  int64_t start = now_ms();
  s = shmch_endpoint_open(g_name.c_str(), SHMCH_CLIENT, &o, &ep, &err);
  int64_t spent = now_ms() - start;
  CHECK(s == SHMCH_E_NOT_READY && ep == nullptr);
  CHECK(spent >= 290 && spent < 600);

  // Every slot it claimed went back: with 4 slots, 4 clients at once still get theirs.
  kill(server, SIGCONT);
  std::vector<pid_t> clients;
  for (int k = 0; k < 4; k++) clients.push_back(spawn([k] { return round_trip_client(k); }));
  for (pid_t c : clients) CHECK(reap(c) == 0);
  close(stop[1]);
  CHECK(reap(server) == 4);
}

// A client waiting for a server of many that dies before it made the connection ("server
// gone") gives that attempt up and connects to the next server of the name.
void many_clients_server_gone() {
  next_name();
  int ready[2];
  if (pipe(ready) != 0) {
    CHECK(false);
    return;
  }
  pid_t first = spawn([&] {
    close(ready[0]);
    ManyServer many;
    many.srv = create_many(4);
    if (many.srv == nullptr) return 90;
    char one = 1;
    if (write(ready[1], &one, 1) != 1) return 91;
    pause();  // accepts nobody
    return 0;
  });
  close(ready[1]);
  char one = 0;
  CHECK(read(ready[0], &one, 1) == 1);
  close(ready[0]);
  pid_t client = spawn([] { return round_trip_client(7); });
  usleep(300 * 1000);  // its slot is claimed by now, and waits
  kill(first, SIGKILL);
  CHECK(reap(first) == 1000 + SIGKILL);
  ManyServer next;
  next.srv = create_many(4);  // reclaims the dead server's directory
  CHECK(next.srv != nullptr);
  if (next.srv == nullptr) {
    kill(client, SIGKILL);
    reap(client);
    shmch_unlink(g_name.c_str(), nullptr);
    return;
  }
  int64_t deadline = now_ms() + 10000;
  while ((next.answered < 1 || next.left < 1) && now_ms() < deadline) next.pump(50);
  CHECK(next.answered == 1 && next.left == 1 && !next.broken);
  CHECK(reap(client) == 0);
  next.close();
}

struct Case {
  const char* name;
  void (*run)();
};

const Case kCases[] = {
    {"an open waiting for a server returns SHMCH_E_CLOSED soon after its abort_flag is set", open_abort},
    {"a wait reports SHMCH_EV_DRAINED once when the outgoing queue empties", drained_event},
    {"a forked child closing its copy of an endpoint leaves the parent's peer watch running", fork_keeps_watch},
    {"flush and close return at their timeout against a peer that floods and never reads", flush_against_flood},
    {"a server drops a client that reuses a request id still in flight", request_id_reused},
    {"a server drops a client that sends a frame after its BYE", frame_after_bye},
    {"an ERROR's message and code are NUL-free, valid UTF-8", error_strings},
    {"wait_for without READABLE sleeps through unread messages until the queue drains", wait_for_paused},
    {"two clients of a server of many clients, connected at once, each with its round trip", many_clients_round_trips},
    {"an open waiting for a server of many that never accepts ends soon after its abort_flag is set",
     many_clients_abort},
    {"a client whose server of many died before making its connection connects to the next one",
     many_clients_server_gone},
};

}  // namespace

int main() {
  signal(SIGPIPE, SIG_IGN);
  for (const Case& c : kCases) {
    int before = g_failures;
    std::printf("  - %s\n", c.name);
    alarm(kCaseLimitS);
    c.run();
    alarm(0);
    std::printf("    %s\n", g_failures == before ? "ok" : "FAILED");
  }
  std::printf("%s\n", g_failures == 0 ? "message_test: all passed" : "message_test: FAILED");
  return g_failures == 0 ? 0 : 1;
}
