// JS class `SharedMemory`: a named segment (shmch_shm of shmchannel.h) and a zero-copy
// ArrayBuffer over it. close() detaches the ArrayBuffer before unmapping, so a view kept after
// close reads as empty instead of touching unmapped memory.
#pragma once

#include <napi.h>

#include <memory>

#include "../core/shmchannel.h"

namespace shmch_binding {

// The one owner of a shmch_shm. Shared by the wrap and its ArrayBuffer's finalizer, so that the
// mapping lives until both are done with it; close() ends it sooner, once the ArrayBuffer is
// detached and nothing can reach the memory.
class Mapping {
 public:
  Mapping() = default;
  ~Mapping() { Close(); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  // Where shmch_shm_create/shmch_shm_open put the mapping: this object owns it from then on.
  shmch_shm** Slot() { return &shm_; }
  // Null once closed.
  shmch_shm* get() const { return shm_; }
  void Close() {
    shmch_shm_close(shm_);
    shm_ = nullptr;
  }

 private:
  shmch_shm* shm_ = nullptr;
};

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

  std::shared_ptr<Mapping> mapping_ = std::make_shared<Mapping>();
  Napi::Reference<Napi::ArrayBuffer> buffer_;
  size_t size_ = 0;
};

}  // namespace shmch_binding
