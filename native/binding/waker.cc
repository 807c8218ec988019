#include "waker.h"

#include <string>
#include <system_error>

namespace shmch_binding {

namespace {
// Bounds how late a dead peer is noticed, and what a corrupted semaphore can cost.
constexpr int kWaitTimeoutMs = 250;
}  // namespace

Waker::Waker(Napi::Env env, shmch_channel* channel, Napi::Function on_wake) : channel_(channel) {
  tsfn_ = Napi::ThreadSafeFunction::New(env, on_wake, "shmchannel waker", 0, 1);
  try {
    thread_ = std::thread([this] { Run(); });
  } catch (const std::system_error& e) {
    // No thread: release the ThreadSafeFunction, or it would keep the event loop alive.
    tsfn_.Release();
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
  tsfn_.Release();
}

void Waker::Ref(Napi::Env env) {
  if (!stopped_) tsfn_.Ref(env);
}

void Waker::Unref(Napi::Env env) {
  if (!stopped_) tsfn_.Unref(env);
}

void Waker::Run() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return armed_ || stopping_; });
      if (stopping_) return;
    }
    int r = shmch_wait(channel_, kWaitTimeoutMs);
    int events = 0;
    if (r == SHMCH_WAIT_READABLE) {
      events = kEventActivity;
    } else {
      // Woken without data: space freed for our writes, or the peer closed. Timed out: time
      // to check that the peer still lives.
      if (r == SHMCH_WAIT_WOKEN) events = kEventActivity;
      if (shmch_peer_state(channel_) == SHMCH_PEER_GONE) events |= kEventPeerLost;
    }
    if (events == 0) continue;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      armed_ = false;
    }
    tsfn_.NonBlockingCall([events](Napi::Env env, Napi::Function on_wake) {
      if (env != nullptr && on_wake != nullptr) on_wake.Call({Napi::Number::New(env, events)});
    });
  }
}

}  // namespace shmch_binding
