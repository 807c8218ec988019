// When shmch_wait() returns: for a peer that flagged its leave and rang before the wait read its
// doorbell (that ring is already counted in what the wait sleeps on), and, for waits with no
// timeout, for everything that must end them without one. Each case runs the peer in a child
// process on a real segment; a case that hangs fails the run. Usage: wait_test
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../core/layout.h"
#include "../core/shmchannel.h"
#include "../core/test_hooks.h"
#include "../core/truncation_guard.h"

namespace {

// Long enough that a wait which sleeps through a ring is told from one that returns at once.
constexpr int kWaitMs = 2000;
// A wait that must not be ended by what it sees.
constexpr int kQuietWaitMs = 200;
// A case still running after this hangs: a wait with no timeout that nothing ended.
constexpr unsigned kCaseLimitS = 20;
// No timeout.
constexpr int kForever = -1;

int g_case = 0;
std::string g_name;

shmch_channel* create_server() {
  g_name = "/shmch-wait-test-" + std::to_string(getpid()) + "-" + std::to_string(++g_case);
  shmch_options options{4096, 4096, 0600};
  shmch_channel* server = nullptr;
  shmch_error err{};
  if (shmch_create(g_name.c_str(), &options, &server, &err) != SHMCH_OK) {
    std::printf("     cannot create %s: %s\n", g_name.c_str(), err.detail != nullptr ? err.detail : "?");
    return nullptr;
  }
  return server;
}

shmch_channel* attach_or_exit() {
  shmch_channel* client = nullptr;
  shmch_error err{};
  if (shmch_attach(g_name.c_str(), &client, &err) != SHMCH_OK) _exit(90);
  return client;
}

// A child that runs `peer` with a pipe from the parent (`go`) and one to it (`ready`).
struct Child {
  pid_t pid = -1;
  int go = -1;
  int ready = -1;
};

template <typename Peer>
Child spawn(Peer peer) {
  int go[2];
  int ready[2];
  if (pipe(go) != 0 || pipe(ready) != 0) _exit(80);
  Child c;
  c.pid = fork();
  if (c.pid == 0) {
    close(go[1]);
    close(ready[0]);
    peer(go[0], ready[1]);
    _exit(0);
  }
  close(go[0]);
  close(ready[1]);
  c.go = go[1];
  c.ready = ready[0];
  return c;
}

void signal_fd(int fd) {
  char b = 1;
  if (write(fd, &b, 1) != 1) _exit(81);
}

void await_fd(int fd) {
  char b;
  if (read(fd, &b, 1) != 1) _exit(82);
}

// A child attached as the client, which runs `then` on it once the parent says go.
template <typename Then>
Child spawn_client(Then then) {
  return spawn([then](int go, int ready) {
    shmch_channel* client = attach_or_exit();
    signal_fd(ready);
    await_fd(go);
    then(client);
  });
}

// The child's exit status, 0 if it did what it was to do.
int reap(Child& c) {
  close(c.go);
  close(c.ready);
  int status = 0;
  waitpid(c.pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

const char* wait_name(int r) {
  return r == SHMCH_WAIT_WOKEN ? "WOKEN" : r == SHMCH_WAIT_READABLE ? "READABLE" : "TIMEOUT";
}

// The segment's header, mapped as a peer that speaks no protocol would map it.
uint8_t* map_header_or_exit() {
  int fd = shm_open(g_name.c_str(), O_RDWR, 0);
  if (fd < 0) _exit(91);
  void* m = mmap(nullptr, shmch::kHeaderSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (m == MAP_FAILED) _exit(92);
  return static_cast<uint8_t*>(m);
}

// Returns once the server's waiter said it sleeps: it has read its doorbell, so a ring from now
// on is one its wait must see.
void await_server_asleep(uint8_t* header) {
  while (__atomic_load_n(shmch::word32(header, shmch::off::kServerSleeping), __ATOMIC_SEQ_CST) == 0) usleep(1000);
}

// In a child that speaks no protocol: sets `flags` in the state word and, if `ring`, rings the
// server's doorbell; exit 0 if it could.
int set_state_flags_in_child(uint32_t flags, bool ring) {
  Child c = spawn([flags, ring](int, int) {
    uint8_t* b = map_header_or_exit();
    __atomic_fetch_or(shmch::word32(b, shmch::off::kState), flags, __ATOMIC_SEQ_CST);
    if (ring) __atomic_fetch_add(shmch::word32(b, shmch::off::kServerDoorbell), 1, __ATOMIC_SEQ_CST);
  });
  return reap(c);
}

// Cuts the segment short, as a hostile or confused process can.
void truncate_segment_or_exit(off_t size) {
  int fd = shm_open(g_name.c_str(), O_RDWR, 0);
  if (fd < 0 || ftruncate(fd, size) != 0) _exit(93);
  close(fd);
}

bool expect_wait(shmch_channel* ch, int timeout_ms, int expected) {
  int r = shmch_wait(ch, timeout_ms);
  if (r != expected) std::printf("     shmch_wait returned %s, expected %s\n", wait_name(r), wait_name(expected));
  return r == expected;
}

bool client_closed_before_the_server_waits() {
  shmch_channel* server = create_server();
  if (server == nullptr) return false;
  Child c = spawn([](int, int) { shmch_close(attach_or_exit()); });
  bool ok = reap(c) == 0;
  ok = expect_wait(server, kWaitMs, SHMCH_WAIT_WOKEN) && ok;
  ok = shmch_peer_state(server) == SHMCH_PEER_GONE && ok;
  shmch_close(server);
  return ok;
}

// In the child, the client waits once the parent did `act` to the server; exit 0 if woken.
template <typename Act>
bool client_woken_after(Act act) {
  shmch_channel* server = create_server();
  if (server == nullptr) return false;
  Child c = spawn_client([](shmch_channel* client) {
    int r = shmch_wait(client, kWaitMs);
    bool gone = shmch_peer_state(client) == SHMCH_PEER_GONE;
    shmch_close(client);
    _exit(r == SHMCH_WAIT_WOKEN && gone ? 0 : 10 + r);
  });
  await_fd(c.ready);
  act(server);
  signal_fd(c.go);
  int status = reap(c);
  if (status != 0) std::printf("     client exit %d (10 + its shmch_wait result)\n", status);
  if (server != nullptr) shmch_close(server);
  return status == 0;
}

bool server_closed_before_the_client_waits() {
  return client_woken_after([](shmch_channel*& server) {
    shmch_close(server);
    server = nullptr;
  });
}

bool client_dropped_before_it_waits() {
  return client_woken_after([](shmch_channel*& server) { shmch_drop_client(server); });
}

// The server's own CLIENT_DROPPED must not end its waits, or it would spin until the client goes.
bool server_not_woken_by_its_own_drop() {
  shmch_channel* server = create_server();
  if (server == nullptr) return false;
  Child c = spawn_client([](shmch_channel* client) { shmch_close(client); });
  await_fd(c.ready);
  shmch_drop_client(server);
  // The drop rang the server's own doorbell: the first wait may return for that ring, no other.
  shmch_wait(server, 0);
  bool ok = expect_wait(server, kQuietWaitMs, SHMCH_WAIT_TIMEOUT);
  ok = expect_wait(server, kQuietWaitMs, SHMCH_WAIT_TIMEOUT) && ok;
  // Once the client leaves, the server is woken as usual.
  signal_fd(c.go);
  ok = reap(c) == 0 && ok;
  ok = expect_wait(server, kWaitMs, SHMCH_WAIT_WOKEN) && ok;
  shmch_close(server);
  return ok;
}

// No client sets CLIENT_CLOSED without CLIENT_ATTACHED; a stray one must not wake the server.
bool stray_client_closed_flag_wakes_no_server() {
  shmch_channel* server = create_server();
  if (server == nullptr) return false;
  bool ok = set_state_flags_in_child(SHMCH_STATE_CLIENT_CLOSED, true) == 0;
  ok = expect_wait(server, kQuietWaitMs, SHMCH_WAIT_TIMEOUT) && ok;
  shmch_close(server);
  return ok;
}

// shmch_wake() goes through a word of this process: it ends a wait whose segment (the doorbell
// with it) another process cut off.
bool wake_ends_an_untimed_wait_on_a_lost_segment() {
  shmch_channel* server = create_server();
  if (server == nullptr) return false;
  Child c = spawn([](int, int) { truncate_segment_or_exit(0); });
  bool ok = reap(c) == 0;
  std::thread waker([server] {
    // Late enough that the wait, most likely, already sleeps; the wake is remembered if not.
    usleep(100 * 1000);
    shmch_wake(server);
  });
  int r = shmch_wait(server, kForever);
  waker.join();
  if (r == SHMCH_WAIT_TIMEOUT) std::printf("     an untimed shmch_wait returned TIMEOUT\n");
  ok = r != SHMCH_WAIT_TIMEOUT && ok;
  shmch_close(server);
  return ok;
}

// What the binding's segment watch does: inotify reports another process's ftruncate, and
// shmch_check_segment() finds the segment shorter than its mapping before any access faulted.
bool watch_sees_another_process_cut_the_segment() {
  shmch_channel* server = create_server();
  if (server == nullptr) return false;
  int watch = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  bool ok = watch >= 0 && shmch_watch_segment(server, watch) >= 0;
  if (!ok) std::printf("     cannot watch the segment: %s\n", std::strerror(errno));
  ok = shmch_check_segment(server) == 0 && ok;  // whole, so far
  Child c = spawn([](int, int) { truncate_segment_or_exit(64); });
  ok = reap(c) == 0 && ok;
  struct pollfd pfd = {watch, POLLIN, 0};
  bool seen = ok && poll(&pfd, 1, kWaitMs) == 1;
  alignas(inotify_event) char event[sizeof(inotify_event) + 256];
  seen = seen && read(watch, event, sizeof event) >= static_cast<ssize_t>(sizeof(inotify_event)) &&
         (reinterpret_cast<inotify_event*>(event)->mask & IN_MODIFY) != 0;
  if (ok && !seen) std::printf("     no IN_MODIFY for the truncation\n");
  ok = seen && ok;
  ok = shmch_check_segment(server) == 1 && ok;
  // The wait reports the loss, at once and with no timeout, so that the reader learns of it.
  if (ok) ok = expect_wait(server, kForever, SHMCH_WAIT_READABLE);
  if (watch >= 0) close(watch);
  shmch_close(server);
  return ok;
}

// A client that attaches rings the server: a server that waits with no timeout learns of a
// client that dies before its first word.
bool attach_wakes_an_untimed_server_wait() {
  shmch_channel* server = create_server();
  if (server == nullptr) return false;
  Child c = spawn([](int, int) {
    await_server_asleep(map_header_or_exit());
    attach_or_exit();
    _exit(0);  // dies attached, without a word and without closing
  });
  int r = shmch_wait(server, kForever);
  bool ok = r != SHMCH_WAIT_TIMEOUT;
  ok = reap(c) == 0 && ok;
  shmch_close(server);
  return ok;
}

// A client turned away because the slot looks taken knocks: the holder may have died attached
// before it rang, and a server that waits with no timeout would never look at the slot again.
bool refused_attach_wakes_an_untimed_server_wait() {
  shmch_channel* server = create_server();
  if (server == nullptr) return false;
  // A holder that flagged its attach, wrote no pid and rang nobody.
  bool ok = set_state_flags_in_child(SHMCH_STATE_CLIENT_ATTACHED, false) == 0;
  Child knocker = spawn([](int, int) {
    await_server_asleep(map_header_or_exit());
    shmch_channel* client = nullptr;
    shmch_error err{};
    _exit(shmch_attach(g_name.c_str(), &client, &err) == SHMCH_OK ? 94 : 0);
  });
  int r = shmch_wait(server, kForever);
  ok = r != SHMCH_WAIT_TIMEOUT && ok;
  ok = reap(knocker) == 0 && ok;
  shmch_close(server);
  return ok;
}

// The window that a helper's review found once the 2 s timeout that hid it went: a write finds
// the ring full and flags its wait in the ring; before the channel records that its writer is
// blocked, the reader frees space and rings, and only then does the waiter start to wait. The
// waiter has that ring counted already, and saw no blocked writer: unless the write wakes it,
// it sleeps forever. The hook holds the write in that window until all of this has happened.
struct BlockedWriterWindow {
  uint8_t* header = nullptr;
  Child reader;
  std::atomic<bool> waiter_may_wait{false};
};
BlockedWriterWindow g_window;

void hold_write_in_the_window(shmch_channel*) {
  uint32_t* bell = shmch::word32(g_window.header, shmch::off::kServerDoorbell);
  uint32_t rung_before = __atomic_load_n(bell, __ATOMIC_SEQ_CST);
  signal_fd(g_window.reader.go);  // frees the ring, finds our wait flagged, rings
  while (__atomic_load_n(bell, __ATOMIC_SEQ_CST) == rung_before) usleep(1000);
  g_window.waiter_may_wait.store(true);
  await_server_asleep(g_window.header);
}

bool blocked_writer_woken_when_space_freed_before_it_said_so() {
  shmch_channel* server = create_server();
  if (server == nullptr) return false;
  shmch_info info{};
  shmch_get_info(server, &info);
  const uint32_t payload_size = 1000;
  const uint32_t frame_size = SHMCH_FRAME_HEADER_SIZE + payload_size;
  const uint32_t fill = info.ring_capacity / frame_size;  // whole frames; the next one does not fit
  g_window.header = map_header_or_exit();
  g_window.reader = spawn([fill, frame_size](int go, int ready) {
    shmch_channel* client = attach_or_exit();
    signal_fd(ready);
    await_fd(go);
    std::vector<uint8_t> batch(size_t(fill) * frame_size);
    size_t got = 0;
    while (got < batch.size()) {
      size_t written = 0;
      if (shmch_read(client, batch.data() + got, batch.size() - got, &written) != SHMCH_OK) _exit(20);
      got += written;
    }
    // Stays attached and silent until told: a leaving client wakes the server for its own reason.
    await_fd(go);
    shmch_close(client);
  });
  await_fd(g_window.reader.ready);
  std::vector<uint8_t> payload(payload_size, 0x5a);
  bool ok = true;
  for (uint32_t i = 0; i < fill && ok; i++) {
    ok = shmch_write(server, 3 /* NOTIFY */, 0, payload_size, payload.data(), payload_size) == SHMCH_OK;
  }
  int woken = SHMCH_WAIT_TIMEOUT;
  std::thread waiter([&] {
    while (!g_window.waiter_may_wait.load()) usleep(1000);
    woken = shmch_wait(server, kForever);
  });
  shmch::test_hooks::before_writer_marked_blocked = hold_write_in_the_window;
  shmch_status full = shmch_write(server, 3, 0, payload_size, payload.data(), payload_size);
  shmch::test_hooks::before_writer_marked_blocked = nullptr;
  if (full != SHMCH_E_FULL) {
    std::printf("     the write after %u frames returned %d, not SHMCH_E_FULL\n", fill, full);
    ok = false;
    g_window.waiter_may_wait.store(true);
    shmch_wake(server);
  }
  waiter.join();
  ok = woken != SHMCH_WAIT_TIMEOUT && ok;
  signal_fd(g_window.reader.go);
  ok = reap(g_window.reader) == 0 && ok;
  shmch_close(server);
  return ok;
}

struct Case {
  const char* what;
  bool (*run)();
};

const Case kCases[] = {
    {"a client that closed before the server waits wakes it", client_closed_before_the_server_waits},
    {"a server that closed before the client waits wakes it", server_closed_before_the_client_waits},
    {"a client dropped before it waits is woken", client_dropped_before_it_waits},
    {"a server is not woken by its own drop until the client leaves", server_not_woken_by_its_own_drop},
    {"a stray CLIENT_CLOSED without CLIENT_ATTACHED wakes no server", stray_client_closed_flag_wakes_no_server},
    {"shmch_wake ends an untimed wait on a segment cut to nothing", wake_ends_an_untimed_wait_on_a_lost_segment},
    {"inotify and shmch_check_segment see another process cut the segment", watch_sees_another_process_cut_the_segment},
    {"an attach wakes a server's untimed wait", attach_wakes_an_untimed_server_wait},
    {"an attach refused for a taken slot wakes a server's untimed wait", refused_attach_wakes_an_untimed_server_wait},
    {"a full write is woken for space freed before it recorded that it blocks",
     blocked_writer_woken_when_space_freed_before_it_said_so},
};

const char* g_running = "";

void on_case_hung(int) {
  // Only async-signal-safe calls here.
  const char prefix[] = "FAIL (hung) ";
  (void)!write(1, prefix, sizeof prefix - 1);
  (void)!write(1, g_running, std::strlen(g_running));
  (void)!write(1, "\n", 1);
  shm_unlink(g_name.c_str());  // tests leave /dev/shm clean, failed ones too
  _exit(1);
}

}  // namespace

int main() {
  int failures = 0;
  // As the addon does: a wait on a segment cut short reads zeros instead of dying of SIGBUS.
  if (shmch::install_truncation_guard() != SHMCH_OK) return 2;
  signal(SIGALRM, on_case_hung);
  for (const Case& c : kCases) {
    g_running = c.what;
    std::fflush(stdout);
    alarm(kCaseLimitS);
    bool ok = c.run();
    alarm(0);
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", c.what);
    if (!ok) failures++;
  }
  std::printf("wait_test: %d of %zu cases failed\n", failures, sizeof kCases / sizeof kCases[0]);
  return failures == 0 ? 0 : 1;
}
