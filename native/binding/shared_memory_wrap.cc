#include "shared_memory_wrap.h"

#include <string>

#include "../core/shmchannel.h"
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
  if (info.Length() < 4 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsBoolean() ||
      !info[3].IsNumber()) {
    throw Napi::TypeError::New(env, "SharedMemory(name, size, create, mode)");
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  double size = info[1].As<Napi::Number>().DoubleValue();
  bool create = info[2].As<Napi::Boolean>().Value();
  uint32_t mode = info[3].As<Napi::Number>().Uint32Value();
  shmch_error err{};
  shmch_status s = shmch_validate_name(name.c_str(), &err);
  if (s != SHMCH_OK) ThrowStatus(env, s, err, ("invalid shared memory name " + name).c_str());
  // Largest ArrayBuffer V8 accepts on 64-bit is 2^53-1, but keep well inside address space.
  if (!(size >= 0 && size <= 1099511627776.0) || size != static_cast<double>(static_cast<size_t>(size)) ||
      (create && size == 0)) {
    ThrowStatus(env, SHMCH_E_INVALID_SIZE, err, "size must be a whole number of bytes, 1 to 1 TiB");
  }
  segment_ = std::make_shared<shmch::Segment>();
  if (create) {
    s = segment_->create(name.c_str(), static_cast<size_t>(size), mode, false, &err);
  } else {
    s = segment_->open(name.c_str(), 1, SIZE_MAX, &err);
  }
  if (s != SHMCH_OK) ThrowStatus(env, s, err, ("cannot open shared memory " + name).c_str());
  size_ = segment_->size();
}

Napi::Value SharedMemoryWrap::Buffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!buffer_.IsEmpty()) {
    Napi::ArrayBuffer existing = buffer_.Value();
    if (!existing.IsEmpty()) return existing;
  }
  if (segment_->data() == nullptr) {
    shmch_error err{};
    ThrowStatus(env, SHMCH_E_CLOSED, err, "shared memory is closed");
  }
  auto* keep = new std::shared_ptr<shmch::Segment>(segment_);
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
      env, segment_->data(), segment_->size(),
      [](Napi::Env, void*, std::shared_ptr<shmch::Segment>* hint) { delete hint; }, keep);
  buffer_ = Napi::Reference<Napi::ArrayBuffer>::New(ab, 0);
  return ab;
}

Napi::Value SharedMemoryWrap::Size(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(size_));
}

Napi::Value SharedMemoryWrap::Truncated(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), segment_->lost());
}

void SharedMemoryWrap::Close(const Napi::CallbackInfo&) {
  if (!buffer_.IsEmpty()) {
    Napi::ArrayBuffer ab = buffer_.Value();
    if (!ab.IsEmpty() && !ab.IsDetached()) ab.Detach();
    buffer_.Reset();
  }
  segment_->unmap();
}

}  // namespace shmch_binding
