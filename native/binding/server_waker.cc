#include "server_waker.h"

#include <pthread.h>

#include <algorithm>
#include <string>
#include <system_error>

#include "waker.h"

namespace shmch_binding {

namespace {
// Everything a server waits for rings its wait: data, space and leaves (the directory's
// doorbell), deaths (the core's liveness thread), shmch_server_wake(). All but another process
// cutting a connection's segment short: the timed-out wait looks at every connection's size,
// which bounds how late that is noticed. A wake-up costs ~30 us of CPU here.
constexpr int kIdleWaitMs = 2000;
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
  std::lock_guard<std::mutex> lock(mutex_);
  watched_.push_back(connection);
}

void ServerWaker::Unwatch(shmch_channel* connection) {
  std::lock_guard<std::mutex> lock(mutex_);
  watched_.erase(std::remove(watched_.begin(), watched_.end(), connection), watched_.end());
}

void ServerWaker::Run() {
  // Named so that top -H, perf and /proc/<pid>/task show what the thread is.
  pthread_setname_np(pthread_self(), "shmch-server");
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || (armed_ && pauses_ == 0); });
      if (stopping_) return;
      waiting_ = true;
    }
    int r = shmch_server_wait(server_, kIdleWaitMs);
    bool lost = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      waiting_ = false;
      // Under the mutex: Unwatch() takes it before the connection is freed.
      if (r == SHMCH_WAIT_TIMEOUT) {
        for (shmch_channel* connection : watched_) lost = shmch_check_segment(connection) != 0 || lost;
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
