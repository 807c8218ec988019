#include "server_waker.h"

#include <pthread.h>

#include <algorithm>
#include <string>
#include <system_error>

#include "segment_watch.h"
#include "waker.h"

namespace shmch_binding {

namespace {
// Everything a server waits for rings its wait: data, space and leaves (the directory's
// doorbell), deaths (the core's liveness thread), shmch_server_wake(), and, through the segment
// watch, another process cutting a connection's segment short. Where that last one may not ring
// (a connection the segment watch could not take, a wake through the shared doorbell, lost with
// its page), a timed-out wait looks at every connection's size: this bounds how late. A wake-up
// costs ~30 us of CPU here.
constexpr int kUnwatchedIdleWaitMs = 2000;
}  // namespace

ServerWaker::ServerWaker(Napi::Env env, shmch_server* server, Napi::Function on_wake) : server_(server) {
  tsfn_ = Napi::ThreadSafeFunction::New(env, on_wake, "shmchannel server waker", 0, 1);
  try {
    thread_ = std::thread([this] { Run(); });
  } catch (const std::system_error& e) {
    // No thread: release the ThreadSafeFunction, or it would keep the event loop alive.
    tsfn_.Release();
    throw Napi::Error::New(env, std::string("cannot start the server waker thread: ") + e.what());
  }
}

ServerWaker::~ServerWaker() { Stop(); }

void ServerWaker::Arm() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    armed_ = true;
  }
  cv_.notify_all();
}

void ServerWaker::Stop() {
  if (stopped_) return;
  stopped_ = true;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  // Remembered until a wait returns: also ends one the thread is about to start.
  shmch_server_wake(server_);
  if (thread_.joinable()) thread_.join();
  // Before the server frees its connections: the segment watch never touches them again.
  for (const Watched& w : watched_) {
    if (w.segment_watched) segment_watch::Remove(w.connection);
  }
  watched_.clear();
  unwatched_ = 0;
  tsfn_.Release();
}

void ServerWaker::Ref(Napi::Env env) {
  if (!stopped_) tsfn_.Ref(env);
}

void ServerWaker::Unref(Napi::Env env) {
  if (!stopped_) tsfn_.Unref(env);
}

ServerWaker::Paused::Paused(ServerWaker* waker) : waker_(waker) {
  if (waker_ == nullptr) return;
  std::unique_lock<std::mutex> lock(waker_->mutex_);
  ++waker_->pauses_;
  // With pauses_ raised the thread enters no new wait; one it is in (or past the check and
  // about to enter: waiting_ is set under the mutex before) ends at this wake, which the core
  // remembers until a wait returns.
  if (waker_->waiting_) shmch_server_wake(waker_->server_);
  waker_->cv_.wait(lock, [this] { return !waker_->waiting_; });
}

ServerWaker::Paused::~Paused() {
  if (waker_ == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(waker_->mutex_);
    --waker_->pauses_;
  }
  waker_->cv_.notify_all();
}

void ServerWaker::Watch(shmch_channel* connection) {
  bool segment_watched = segment_watch::Add(connection);
  std::lock_guard<std::mutex> lock(mutex_);
  watched_.push_back({connection, segment_watched});
  if (!segment_watched) ++unwatched_;
}

void ServerWaker::Unwatch(shmch_channel* connection) {
  bool segment_watched = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = std::find_if(watched_.begin(), watched_.end(),
                           [connection](const Watched& w) { return w.connection == connection; });
    if (it == watched_.end()) return;
    segment_watched = it->segment_watched;
    if (!segment_watched) --unwatched_;
    watched_.erase(it);
  }
  if (segment_watched) segment_watch::Remove(connection);
}

int ServerWaker::IdleWaitMs() const {
  bool truncation_rings = unwatched_ == 0 && segment_watch::Working() && shmch_wake_is_private() != 0;
  return truncation_rings ? -1 : kUnwatchedIdleWaitMs;
}

void ServerWaker::Run() {
  // Named so that top -H, perf and /proc/<pid>/task show what the thread is.
  pthread_setname_np(pthread_self(), "shmch-server");
  for (;;) {
    int timeout_ms;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || (armed_ && pauses_ == 0); });
      if (stopping_) return;
      waiting_ = true;
      timeout_ms = IdleWaitMs();
    }
    int r = shmch_server_wait(server_, timeout_ms);
    bool lost = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      waiting_ = false;
      // Under the mutex: Unwatch() takes it before the connection is freed.
      if (r == SHMCH_WAIT_TIMEOUT) {
        for (const Watched& w : watched_) lost = shmch_check_segment(w.connection) != 0 || lost;
      }
    }
    cv_.notify_all();
    // Woken by a Pause: reported all the same, as the wake may have hidden a real one (and
    // JS only looks at the connections once more).
    if (r == SHMCH_WAIT_TIMEOUT && !lost) continue;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      armed_ = false;
    }
    tsfn_.NonBlockingCall([](Napi::Env env, Napi::Function on_wake) {
      if (env == nullptr || on_wake == nullptr) return;
      // The C calls, not Napi::Function::Call: see Waker::Run (a worker that terminates).
      napi_value arg;
      napi_value undefined;
      napi_value result;
      if (napi_create_uint32(env, static_cast<uint32_t>(kEventActivity), &arg) != napi_ok) return;
      if (napi_get_undefined(env, &undefined) != napi_ok) return;
      napi_call_function(env, undefined, on_wake, 1, &arg, &result);
    });
  }
}

}  // namespace shmch_binding
