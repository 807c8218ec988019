#include "message_pool.h"

#include <cstdlib>
#include <mutex>
#include <new>

namespace shmch_binding {

namespace {

// Size classes four to a power of two (64, 80, 96, 112, 128, 160 KiB, ...): a block wastes at
// most a quarter of itself, and a class serves the messages of similar size that reuse it.
constexpr int kMinShift = 16;      // log2(kMinBlock)
constexpr int kClasses = 4 * 9 + 1;  // 64 KiB .. 32 MiB

constexpr size_t capacity_of(int cls) {
  return (size_t{1} << (kMinShift + cls / 4)) + (cls % 4) * (size_t{1} << (kMinShift + cls / 4 - 2));
}

int class_of(size_t length) {
  int cls = 0;
  while (capacity_of(cls) < length) ++cls;
  return cls;
}

static_assert(MessagePool::kMinBlock == capacity_of(0), "the first class is kMinBlock");
static_assert(MessagePool::kMaxBlock == capacity_of(kClasses - 1), "the last class is kMaxBlock");

}  // namespace

// Shared with every lent block: a Buffer can be collected after the pool (its environment) is gone.
struct MessagePool::State {
  std::mutex mutex;  // finalizers run on the JS thread, but a lock costs nothing next to a megabyte
  std::vector<void*> idle[kClasses];
  size_t idle_bytes = 0;
  bool keep = false;

  void Return(void* block, int cls) {
    size_t capacity = capacity_of(cls);
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (keep && idle_bytes + capacity <= kMaxIdleBytes) {
        try {
          idle[cls].push_back(block);
          idle_bytes += capacity;
          return;
        } catch (const std::bad_alloc&) {
          // Called from a finalizer, where an exception would terminate: free the block instead.
        }
      }
    }
    std::free(block);
  }

  void Release() {
    std::vector<void*> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex);
      keep = false;
      for (auto& list : idle) {
        blocks.insert(blocks.end(), list.begin(), list.end());
        list.clear();
      }
      idle_bytes = 0;
    }
    for (void* block : blocks) std::free(block);
  }
};

struct MessagePool::Lease {
  std::shared_ptr<State> state;
  int cls;
};

MessagePool::MessagePool() : state_(std::make_shared<State>()) {}

MessagePool::~MessagePool() { state_->Release(); }

Napi::Value MessagePool::Take(Napi::Env env, size_t length) {
  if (length < kMinBlock || length > kMaxBlock || external_refused_) return env.Undefined();
  int cls = class_of(length);
  void* block = nullptr;
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    auto& list = state_->idle[cls];
    if (!list.empty()) {
      block = list.back();
      list.pop_back();
      state_->idle_bytes -= capacity_of(cls);
    }
  }
  if (block == nullptr) block = std::malloc(capacity_of(cls));
  if (block == nullptr) return env.Undefined();  // the caller's own allocation reports the failure
  auto* lease = new (std::nothrow) Lease{state_, cls};
  if (lease == nullptr) {
    state_->Return(block, cls);
    return env.Undefined();
  }

  napi_value buffer = nullptr;
  napi_status status = napi_create_external_buffer(env, length, block, OnCollected, lease, &buffer);
  if (status == napi_ok) {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->keep = true;
    return Napi::Value(env, buffer);
  }
  if (status == napi_no_external_buffers_allowed) {
    // Refused before Node took the block (V8 sandbox): never ask again, keep nothing.
    external_refused_ = true;
    delete lease;
    std::free(block);
    state_->Release();
    return env.Undefined();
  }
  // Any other failure may come after Node took ownership (its finalizer may still run): leak
  // the block and the lease rather than risk freeing them twice.
  throw Napi::Error::New(env);
}

void MessagePool::Release() { state_->Release(); }

size_t MessagePool::IdleBytes() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->idle_bytes;
}

void MessagePool::OnCollected(napi_env, void* data, void* hint) {
  auto* lease = static_cast<Lease*>(hint);
  lease->state->Return(data, lease->cls);
  delete lease;
}

}  // namespace shmch_binding
