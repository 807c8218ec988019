// The checks every call from JavaScript runs on its arguments before any value reaches the
// core. A value of the wrong type is a TypeError, a number out of range a RangeError, and the
// message names the argument (or, for byte arrays, shows the call's signature).
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace shmch_binding {

std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* name);

bool BoolArg(const Napi::CallbackInfo& info, size_t i, const char* name);

Napi::Function FunctionArg(const Napi::CallbackInfo& info, size_t i, const char* name);

// A whole number from 0 to 255.
uint8_t U8Arg(const Napi::CallbackInfo& info, size_t i, const char* name);

// A whole number from 0 to 2^32 - 1.
uint32_t U32Arg(const Napi::CallbackInfo& info, size_t i, const char* name);

// A whole number of bytes from 0 to 2^53 - 1 (beyond it a double skips whole numbers).
size_t ByteCountArg(const Napi::CallbackInfo& info, size_t i, const char* name);

// A Uint8Array, or a TypeError that shows the call's signature.
Napi::Uint8Array BytesArg(const Napi::CallbackInfo& info, size_t i, const char* signature);

}  // namespace shmch_binding
