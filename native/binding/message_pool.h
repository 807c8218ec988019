// Memory for large received messages that stays mapped between messages.
//
// A fresh Buffer of a megabyte or more comes from glibc's mmap and goes back to the kernel when
// it is collected, so every large message faults in all of its pages again: that, not the copy,
// bounds payload throughput. A block from this pool backs a Buffer as external memory; when the
// Buffer is collected the block comes back here, already faulted in, for the next message.
#pragma once

#include <napi.h>

#include <cstddef>
#include <memory>
#include <vector>

namespace shmch_binding {

class MessagePool {
 public:
  // Blocks come in size classes from kMinBlock to kMaxBlock; smaller and larger messages are not pooled.
  static constexpr size_t kMinBlock = size_t{64} << 10;
  static constexpr size_t kMaxBlock = size_t{32} << 20;
  // Idle blocks beyond this are freed on return: the pool bounds what it holds, not what is lent.
  // V8 collects external memory about every 64 MiB allocated, and the blocks of one such
  // collection come back together: a smaller bound would free most of them.
  static constexpr size_t kMaxIdleBytes = size_t{96} << 20;

  MessagePool();
  ~MessagePool();

  // A Buffer of `length` bytes (uninitialized) backed by a pooled block, or an empty value when
  // the length is not pooled or the runtime refuses external buffers (Electron's V8 sandbox).
  // From then on, blocks that come back are kept for reuse.
  Napi::Value Take(Napi::Env env, size_t length);
  // Frees the idle blocks, and blocks that come back from now until the next Take.
  void Release();
  size_t IdleBytes() const;

 private:
  struct State;
  struct Lease;
  static void OnCollected(napi_env env, void* data, void* hint);

  std::shared_ptr<State> state_;
  bool external_refused_ = false;
};

}  // namespace shmch_binding
