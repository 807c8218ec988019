// JS class `SharedMemory`: a named segment and a zero-copy ArrayBuffer over it. close()
// detaches the ArrayBuffer before unmapping, so a view kept after close reads as empty
// instead of touching unmapped memory.
#pragma once

#include <napi.h>

#include <memory>

#include "../core/segment.h"

namespace shmch_binding {

class SharedMemoryWrap : public Napi::ObjectWrap<SharedMemoryWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  // new SharedMemory(name, size, create: boolean, mode)   (size 0 with create=false: whole segment)
  explicit SharedMemoryWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value Buffer(const Napi::CallbackInfo& info);
  Napi::Value Size(const Napi::CallbackInfo& info);
  Napi::Value Truncated(const Napi::CallbackInfo& info);
  void Close(const Napi::CallbackInfo& info);

  // Shared with the ArrayBuffer's finalizer: the mapping lives until both are done with it.
  std::shared_ptr<shmch::Segment> segment_;
  Napi::Reference<Napi::ArrayBuffer> buffer_;
  size_t size_ = 0;
};

}  // namespace shmch_binding
