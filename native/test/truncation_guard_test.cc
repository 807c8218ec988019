// What the SIGBUS guard does with each kind of SIGBUS, each case in a child process of its own
// (the guard is process-wide). Usage: truncation_guard_test
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "../core/segment.h"
#include "../core/truncation_guard.h"

namespace {

volatile sig_atomic_t g_previous_called = 0;
const std::string kName = "/shmch-guard-test-" + std::to_string(getpid());

// Which one was called: 1 the SA_SIGINFO handler, 2 the plain one.
void previous_with_info(int, siginfo_t*, void*) { g_previous_called = 1; }
void previous_plain(int) { g_previous_called = 2; }

void set_previous(void (*plain)(int), void (*with_info)(int, siginfo_t*, void*)) {
  struct sigaction action {};
  sigemptyset(&action.sa_mask);
  if (with_info != nullptr) {
    action.sa_sigaction = with_info;
    action.sa_flags = SA_SIGINFO;
  } else {
    action.sa_handler = plain;
  }
  sigaction(SIGBUS, &action, nullptr);
}

void install_or_exit() {
  if (shmch::install_truncation_guard() != SHMCH_OK) _exit(90);
}

void uninstall_or_exit() {
  if (shmch_unguard_truncation() != SHMCH_OK) _exit(93);
}

bool installed_is(void (*plain)(int), void (*with_info)(int, siginfo_t*, void*)) {
  struct sigaction current {};
  if (sigaction(SIGBUS, nullptr, &current) != 0) return false;
  if (with_info != nullptr) return (current.sa_flags & SA_SIGINFO) != 0 && current.sa_sigaction == with_info;
  return (current.sa_flags & SA_SIGINFO) == 0 && current.sa_handler == plain;
}

// Maps a fresh object of two pages, unguarded unless `guarded`, and shrinks it to nothing.
volatile uint8_t* shrunk_mapping(bool guarded, shmch::Segment& segment) {
  shm_unlink(kName.c_str());
  size_t size = 2 * static_cast<size_t>(sysconf(_SC_PAGESIZE));
  volatile uint8_t* p = nullptr;
  if (guarded) {
    shmch_error err{};
    if (segment.create(kName.c_str(), size, 0600, false, &err) != SHMCH_OK) _exit(91);
    p = segment.data();
  } else {
    int fd = shm_open(kName.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
    if (fd < 0 || ftruncate(fd, static_cast<off_t>(size)) != 0) _exit(91);
    void* m = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) _exit(91);
    p = static_cast<uint8_t*>(m);
  }
  p[100] = 42;
  int fd = shm_open(kName.c_str(), O_RDWR, 0);
  if (fd < 0 || ftruncate(fd, 0) != 0) _exit(92);
  close(fd);
  shm_unlink(kName.c_str());
  return p;
}

struct Case {
  const char* what;
  void (*run)();
  int expect_signal;  // 0: the child must exit 0
};

const Case kCases[] = {
    {"a guarded segment shrunk to nothing reads zeros and is marked lost",
     [] {
       install_or_exit();
       shmch::Segment segment;
       volatile uint8_t* p = shrunk_mapping(true, segment);
       if (segment.lost()) _exit(1);
       if (p[100] != 0) _exit(2);
       if (!segment.lost()) _exit(3);
       p[100] = 7;  // private now, but writable
       _exit(p[100] == 7 ? 0 : 4);
     },
     0},
    {"raw shared memory (shmch_shm) shrunk to nothing reads zeros and says it was truncated",
     [] {
       if (shmch_guard_truncation() != SHMCH_OK) _exit(90);
       shm_unlink(kName.c_str());
       size_t size = 2 * static_cast<size_t>(sysconf(_SC_PAGESIZE));
       shmch_error err{};
       shmch_shm* created = nullptr;
       shmch_shm* opened = nullptr;
       if (shmch_shm_create(kName.c_str(), size, 0600, &created, &err) != SHMCH_OK) _exit(91);
       if (shmch_shm_open(kName.c_str(), &opened, &err) != SHMCH_OK) _exit(91);
       if (shmch_shm_size(opened) != size) _exit(19);
       volatile uint8_t* p = shmch_shm_data(opened);
       shmch_shm_data(created)[100] = 42;
       if (p[100] != 42) _exit(20);
       int fd = shm_open(kName.c_str(), O_RDWR, 0);
       if (fd < 0 || ftruncate(fd, 0) != 0) _exit(92);
       close(fd);
       shm_unlink(kName.c_str());
       if (shmch_shm_truncated(opened) != 0) _exit(21);
       if (p[100] != 0) _exit(22);
       if (shmch_shm_truncated(opened) != 1 || shmch_shm_truncated(created) != 0) _exit(23);
       shmch_shm_close(opened);
       shmch_shm_close(created);
       _exit(0);
     },
     0},
    {"an unguarded mapping shrunk under the guard still dies of SIGBUS",
     [] {
       signal(SIGBUS, SIG_DFL);  // not a sanitizer's handler: the default is what is tested
       install_or_exit();
       shmch::Segment unused;
       volatile uint8_t* p = shrunk_mapping(false, unused);
       _exit(p[100] == 255 ? 5 : 6);
     },
     SIGBUS},
    {"a sent SIGBUS with the default action before still kills",
     [] {
       signal(SIGBUS, SIG_DFL);
       install_or_exit();
       raise(SIGBUS);
       _exit(7);
     },
     SIGBUS},
    {"a sent SIGBUS that was ignored before stays ignored",
     [] {
       signal(SIGBUS, SIG_IGN);
       install_or_exit();
       raise(SIGBUS);
       _exit(0);
     },
     0},
    {"a fault outside our mappings that was ignored before still kills",
     [] {
       signal(SIGBUS, SIG_IGN);
       install_or_exit();
       shmch::Segment unused;
       volatile uint8_t* p = shrunk_mapping(false, unused);
       _exit(p[100] == 255 ? 8 : 9);
     },
     SIGBUS},
    {"a sent SIGBUS goes on to the SA_SIGINFO handler installed before",
     [] {
       set_previous(nullptr, previous_with_info);
       install_or_exit();
       raise(SIGBUS);
       _exit(g_previous_called ? 0 : 10);
     },
     0},
    {"a sent SIGBUS goes on to the plain handler installed before",
     [] {
       set_previous(previous_plain, nullptr);
       install_or_exit();
       raise(SIGBUS);
       _exit(g_previous_called ? 0 : 11);
     },
     0},
    {"uninstalling puts back the handler installed before",
     [] {
       set_previous(nullptr, previous_with_info);
       install_or_exit();
       if (installed_is(nullptr, previous_with_info)) _exit(12);
       uninstall_or_exit();
       _exit(installed_is(nullptr, previous_with_info) ? 0 : 13);
     },
     0},
    {"a guarded segment shrunk after uninstalling dies of SIGBUS",
     [] {
       signal(SIGBUS, SIG_DFL);
       install_or_exit();
       uninstall_or_exit();
       shmch::Segment segment;
       volatile uint8_t* p = shrunk_mapping(true, segment);
       _exit(p[100] == 255 ? 14 : 15);
     },
     SIGBUS},
    {"uninstalling leaves a handler installed after ours in place",
     [] {
       install_or_exit();
       set_previous(previous_plain, nullptr);
       uninstall_or_exit();
       _exit(installed_is(previous_plain, nullptr) ? 0 : 16);
     },
     0},
    {"installing again passes signals on to the handler found then",
     [] {
       set_previous(nullptr, previous_with_info);
       install_or_exit();
       uninstall_or_exit();
       set_previous(previous_plain, nullptr);
       install_or_exit();
       raise(SIGBUS);
       _exit(g_previous_called == 2 ? 0 : 17);
     },
     0},
    {"installing again over our own handler, put back by another, still passes signals on",
     [] {
       set_previous(nullptr, previous_with_info);
       install_or_exit();
       struct sigaction ours {};
       sigaction(SIGBUS, nullptr, &ours);
       set_previous(previous_plain, nullptr);  // a later handler, which saved ours
       uninstall_or_exit();                    // leaves it in place
       sigaction(SIGBUS, &ours, nullptr);      // which puts ours back as it goes
       install_or_exit();
       // Recorded as the previous handler, ours would call itself until the stack ran out.
       raise(SIGBUS);
       _exit(g_previous_called == 1 ? 0 : 18);
     },
     0},
};

}  // namespace

int main() {
  int failures = 0;
  for (const Case& c : kCases) {
    pid_t child = fork();
    if (child == 0) {
      c.run();
      _exit(99);
    }
    int status = 0;
    waitpid(child, &status, 0);
    bool ok = c.expect_signal == 0 ? WIFEXITED(status) && WEXITSTATUS(status) == 0
                                   : WIFSIGNALED(status) && WTERMSIG(status) == c.expect_signal;
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", c.what);
    if (!ok) {
      if (WIFEXITED(status)) std::printf("     exit %d\n", WEXITSTATUS(status));
      if (WIFSIGNALED(status)) std::printf("     signal %s\n", strsignal(WTERMSIG(status)));
      failures++;
    }
  }
  shm_unlink(kName.c_str());
  std::printf("truncation_guard_test: %d of %zu cases failed\n", failures, sizeof kCases / sizeof kCases[0]);
  return failures == 0 ? 0 : 1;
}
