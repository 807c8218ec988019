#include "arguments.h"

namespace shmch_binding {

namespace {

[[noreturn]] void ThrowType(const Napi::CallbackInfo& info, const char* name, const char* what) {
  throw Napi::TypeError::New(info.Env(), std::string(name) + " must be " + what);
}

// Argument i as a number (a TypeError if it is not one, or missing).
double NumberArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsNumber()) ThrowType(info, name, "a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

}  // namespace

std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsString()) ThrowType(info, name, "a string");
  return info[i].As<Napi::String>().Utf8Value();
}

bool BoolArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsBoolean()) ThrowType(info, name, "a boolean");
  return info[i].As<Napi::Boolean>().Value();
}

Napi::Function FunctionArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsFunction()) ThrowType(info, name, "a function");
  return info[i].As<Napi::Function>();
}

uint32_t U32Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  double v = NumberArg(info, i, name);
  if (!(v >= 0 && v <= 4294967295.0) || v != static_cast<double>(static_cast<uint32_t>(v))) {
    throw Napi::RangeError::New(info.Env(), std::string(name) + " must be a 32-bit unsigned integer");
  }
  return static_cast<uint32_t>(v);
}

uint8_t U8Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  double v = NumberArg(info, i, name);
  if (!(v >= 0 && v <= 255.0) || v != static_cast<double>(static_cast<uint8_t>(v))) {
    throw Napi::RangeError::New(info.Env(), std::string(name) + " must be a byte");
  }
  return static_cast<uint8_t>(v);
}

size_t ByteCountArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  double v = NumberArg(info, i, name);
  // The range test comes first: casting a double outside size_t's range is undefined.
  if (!(v >= 0 && v <= 9007199254740991.0) || v != static_cast<double>(static_cast<size_t>(v))) {
    throw Napi::RangeError::New(info.Env(), std::string(name) + " must be a whole number of bytes");
  }
  return static_cast<size_t>(v);
}

Napi::Uint8Array BytesArg(const Napi::CallbackInfo& info, size_t i, const char* signature) {
  if (info.Length() <= i || !info[i].IsTypedArray() ||
      info[i].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw Napi::TypeError::New(info.Env(), signature);
  }
  return info[i].As<Napi::Uint8Array>();
}

}  // namespace shmch_binding
