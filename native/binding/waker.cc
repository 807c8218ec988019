#include "waker.h"

#include <pthread.h>

#include "segment_watch.h"

#include <string>
#include <system_error>

namespace shmch_binding {

namespace {
// How late a peer that went without a word is noticed when no pidfd watch tells us: one that
// died (no pidfd), or a client this server dropped that has yet to leave.
constexpr int kPeerPollMs = 250;
// Where nothing tells us that another process cut the segment short (no segment watch, or a
// wake that goes through the segment's own doorbell, lost with its page), the next look finds
// it: this bounds how late. A wake-up costs ~30 us of CPU here.
constexpr int kUnwatchedIdleWaitMs = 2000;
}  // namespace

Waker::Waker(Napi::Env env, shmch_channel* channel, Napi::Function on_wake) : channel_(channel) {
  try {
    peer_watch_ = std::make_unique<PeerWatch>(channel);
  } catch (const std::system_error&) {
    // No watch: the timed waits notice a dead peer, a little later and at some idle CPU.
    peer_watch_.reset();
  }
  tsfn_ = Napi::ThreadSafeFunction::New(env, on_wake, "shmchannel waker", 0, 1);
  // After everything that may throw but the thread: a failure from here on removes it again.
  segment_watched_ = segment_watch::Add(channel);
  try {
    thread_ = std::thread([this] { Run(); });
  } catch (const std::system_error& e) {
    // No thread: release the ThreadSafeFunction, or it would keep the event loop alive.
    tsfn_.Release();
    if (segment_watched_) segment_watch::Remove(channel);
    throw Napi::Error::New(env, std::string("cannot start the waker thread: ") + e.what());
  }
}

Waker::~Waker() { Stop(); }

void Waker::Arm() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    armed_ = true;
  }
  cv_.notify_one();
}

void Waker::Stop() {
  if (stopped_) return;
  stopped_ = true;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_one();
  shmch_wake(channel_);
  if (thread_.joinable()) thread_.join();
  if (peer_watch_) peer_watch_->Stop();
  if (segment_watched_) segment_watch::Remove(channel_);
  tsfn_.Release();
}

void Waker::Ref(Napi::Env env) {
  if (!stopped_) tsfn_.Ref(env);
}

void Waker::Unref(Napi::Env env) {
  if (!stopped_) tsfn_.Unref(env);
}

bool Waker::WatchPeer() {
  // The pid in the header (server: the client's, which changes from client to client).
  shmch_info info{};
  shmch_get_info(channel_, &info);
  // Our own closed flag is set only after this thread stopped: a flag seen here is the peer's.
  // (A server that dropped its client sees its own DROPPED flag, and checks until it left.)
  uint32_t leaving = SHMCH_STATE_SERVER_CLOSED | SHMCH_STATE_CLIENT_CLOSED | SHMCH_STATE_CLIENT_DROPPED;
  if (peer_watch_ && info.peer_pid != watched_pid_) {
    watched_pid_ = info.peer_pid;
    // peer_state() records the new peer's identity that the pidfd is checked against.
    bool alive = info.peer_pid != 0 && shmch_peer_state(channel_) == SHMCH_PEER_ALIVE;
    peer_watch_->Watch(alive ? shmch_open_peer_fd(channel_) : -1);
  }
  if ((info.state & leaving) != 0) return true;
  // No peer (a server between clients): the next one announces itself by writing. A slot
  // taken with no pid is a client between its attach and its pid store, or one that died
  // there: shmch_peer_state() frees the slot once it stayed pidless for a while, if asked.
  if (info.peer_pid == 0) return (info.state & SHMCH_STATE_CLIENT_ATTACHED) != 0;
  return !peer_watch_ || !peer_watch_->Active();
}

int Waker::IdleWaitMs() const {
  // Everything else that needs a look rings: the peer's writes and its leave (its doorbell),
  // its death (the pidfd watch, else WatchPeer() asks for kPeerPollMs), our own close.
  bool truncation_rings = segment_watched_ && segment_watch::Working() && shmch_wake_is_private() != 0;
  return truncation_rings ? -1 : kUnwatchedIdleWaitMs;
}

void Waker::Run() {
  // Named so that top -H, perf and /proc/<pid>/task show what the thread is.
  pthread_setname_np(pthread_self(), "shmch-waker");
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return armed_ || stopping_; });
      if (stopping_) return;
    }
    bool poll_peer = WatchPeer();
    int r = shmch_wait(channel_, poll_peer ? kPeerPollMs : IdleWaitMs());
    int events = 0;
    if (r == SHMCH_WAIT_READABLE) {
      events = kEventActivity;
    } else {
      // Woken without data: space freed for our writes, the peer closed, or the watch saw it
      // exit. Timed out: time to check that the peer still lives, unless the watch does that
      // (the check reads /proc).
      if (r == SHMCH_WAIT_WOKEN) events = kEventActivity;
      // WatchPeer() again: what it watches may have changed during the wait (a client that
      // attached and died before storing its pid rang nobody).
      bool check = r == SHMCH_WAIT_WOKEN || poll_peer || WatchPeer();
      if (check && shmch_peer_state(channel_) == SHMCH_PEER_GONE) events |= kEventPeerLost;
    }
    if (events == 0) continue;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      armed_ = false;
    }
    tsfn_.NonBlockingCall([events](Napi::Env env, Napi::Function on_wake) {
      if (env == nullptr || on_wake == nullptr) return;
      // The C calls, not Napi::Function::Call: that one turns a failed call into a C++
      // exception, which node-addon-api rethrows into JavaScript; while a worker terminates
      // that rethrow fails too, and the exception escaping from here aborts the process.
      // A JavaScript exception from onWake stays pending, and Node reports it as uncaught.
      napi_value arg;
      napi_value undefined;
      napi_value result;
      if (napi_create_uint32(env, static_cast<uint32_t>(events), &arg) != napi_ok) return;
      if (napi_get_undefined(env, &undefined) != napi_ok) return;
      napi_call_function(env, undefined, on_wake, 1, &arg, &result);
    });
  }
}

}  // namespace shmch_binding
