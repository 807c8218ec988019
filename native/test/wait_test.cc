// When shmch_wait() returns, for a peer that flagged its leave and rang before the wait read its
// doorbell (that ring is already counted in what the wait sleeps on). Each case runs the peer in
// a child process on a real segment. Usage: wait_test
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "../core/layout.h"
#include "../core/shmchannel.h"

namespace {

// Long enough that a wait which sleeps through a ring is told from one that returns at once.
constexpr int kWaitMs = 2000;
// A wait that must not be ended by what it sees.
constexpr int kQuietWaitMs = 200;

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
  Child c = spawn([](int, int) {
    int fd = shm_open(g_name.c_str(), O_RDWR, 0);
    if (fd < 0) _exit(91);
    void* m = mmap(nullptr, shmch::kHeaderSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) _exit(92);
    uint8_t* b = static_cast<uint8_t*>(m);
    __atomic_fetch_or(shmch::word32(b, shmch::off::kState), SHMCH_STATE_CLIENT_CLOSED, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(shmch::word32(b, shmch::off::kServerDoorbell), 1, __ATOMIC_SEQ_CST);
  });
  bool ok = reap(c) == 0;
  ok = expect_wait(server, kQuietWaitMs, SHMCH_WAIT_TIMEOUT) && ok;
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
};

}  // namespace

int main() {
  int failures = 0;
  for (const Case& c : kCases) {
    bool ok = c.run();
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", c.what);
    if (!ok) failures++;
  }
  std::printf("wait_test: %d of %zu cases failed\n", failures, sizeof kCases / sizeof kCases[0]);
  return failures == 0 ? 0 : 1;
}
