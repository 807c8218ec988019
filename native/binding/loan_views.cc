#include "loan_views.h"

#include <atomic>
#include <utility>
#include <vector>

namespace shmch_binding {

namespace {
std::atomic<bool> refuse_external{false};
}  // namespace

void LoanViews::RefuseExternalMemory(bool refuse) { refuse_external.store(refuse); }

Napi::Value LoanViews::Create(Napi::Env env, Pool pool, uint32_t offset, uint8_t* data, size_t length) {
  if (refuse_external.load()) return Napi::Value();
  napi_value ab = nullptr;
  // No finalizer: the bytes belong to the mapping, which the channel keeps (see Detach).
  napi_status status = napi_create_external_arraybuffer(env, data, length, nullptr, nullptr, &ab);
  if (status == napi_no_external_buffers_allowed) return Napi::Value();
  if (status != napi_ok) throw Napi::Error::New(env, "cannot create a view of the loan");
  Napi::ArrayBuffer buffer(env, ab);
  Detach(pool, offset);
  views_.emplace(Key(pool, offset), Napi::Reference<Napi::ArrayBuffer>::New(buffer, 0));
  return buffer;
}

void LoanViews::Detach(Pool pool, uint32_t offset) {
  auto it = views_.find(Key(pool, offset));
  if (it == views_.end()) return;
  Napi::Reference<Napi::ArrayBuffer> ref = std::move(it->second);
  views_.erase(it);
  if (ref.IsEmpty()) return;
  Napi::ArrayBuffer ab = ref.Value();
  if (!ab.IsEmpty() && !ab.IsDetached()) ab.Detach();
}

void LoanViews::DetachAll(Pool pool) {
  std::vector<uint32_t> offsets;
  for (const auto& v : views_) {
    if (Pool(v.first >> 32) == pool) offsets.push_back(static_cast<uint32_t>(v.first));
  }
  for (uint32_t offset : offsets) Detach(pool, offset);
}

void LoanViews::Forget() {
  for (auto& v : views_) v.second.SuppressDestruct();
  views_.clear();
}

}  // namespace shmch_binding
