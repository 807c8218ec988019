#include "shared_memory_wrap.h"

#include <memory>
#include <string>

#include "../core/shmchannel.h"
#include "arguments.h"
#include "error.h"

namespace shmch_binding {

Napi::Function SharedMemoryWrap::Init(Napi::Env env) {
  return DefineClass(env, "SharedMemory",
                     {
                         InstanceMethod<&SharedMemoryWrap::Buffer>("buffer"),
                         InstanceMethod<&SharedMemoryWrap::Size>("size"),
                         InstanceMethod<&SharedMemoryWrap::Truncated>("truncated"),
                         InstanceMethod<&SharedMemoryWrap::Close>("close"),
                     });
}

SharedMemoryWrap::SharedMemoryWrap(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<SharedMemoryWrap>(info) {
  Napi::Env env = info.Env();
  std::string name = StringArg(info, 0, "name");
  size_t size = ByteCountArg(info, 1, "size");
  bool create = BoolArg(info, 2, "create");
  uint32_t mode = U32Arg(info, 3, "mode");
  shmch_error err{};
  // V8 takes an ArrayBuffer of up to 2^53-1 bytes on 64-bit; keep well inside the address space.
  if (create && (size == 0 || size > (size_t(1) << 40))) {
    ThrowStatus(env, SHMCH_E_INVALID_SIZE, err, "size must be a whole number of bytes, 1 to 1 TiB");
  }
  shmch_status s = create ? shmch_shm_create(name.c_str(), size, mode, mapping_->Slot(), &err)
                          : shmch_shm_open(name.c_str(), mapping_->Slot(), &err);
  if (s != SHMCH_OK) {
    std::string what = s == SHMCH_E_INVALID_NAME ? "invalid shared memory name " : "cannot open shared memory ";
    ThrowStatus(env, s, err, (what + name).c_str());
  }
  size_ = shmch_shm_size(mapping_->get());
}

Napi::Value SharedMemoryWrap::Buffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!buffer_.IsEmpty()) {
    Napi::ArrayBuffer existing = buffer_.Value();
    if (!existing.IsEmpty()) return existing;
  }
  shmch_shm* shm = mapping_->get();
  if (shm == nullptr) {
    shmch_error err{};
    ThrowStatus(env, SHMCH_E_CLOSED, err, "shared memory is closed");
  }
  // The finalizer's share of the mapping; it is the finalizer's once the ArrayBuffer exists.
  auto keep = std::make_unique<std::shared_ptr<Mapping>>(mapping_);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
      env, shmch_shm_data(shm), shmch_shm_size(shm),
      [](Napi::Env, void*, std::shared_ptr<Mapping>* hint) { delete hint; }, keep.get());
  keep.release();
  buffer_ = Napi::Reference<Napi::ArrayBuffer>::New(ab, 0);
  return ab;
}

Napi::Value SharedMemoryWrap::Size(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(size_));
}

Napi::Value SharedMemoryWrap::Truncated(const Napi::CallbackInfo& info) {
  shmch_shm* shm = mapping_->get();
  return Napi::Boolean::New(info.Env(), shm != nullptr && shmch_shm_truncated(shm) != 0);
}

void SharedMemoryWrap::Close(const Napi::CallbackInfo&) {
  if (!buffer_.IsEmpty()) {
    Napi::ArrayBuffer ab = buffer_.Value();
    if (!ab.IsEmpty() && !ab.IsDetached()) ab.Detach();
    buffer_.Reset();
  }
  mapping_->Close();
}

}  // namespace shmch_binding
