// The raw shared memory of shmchannel.h (shmch_shm_*): a Segment behind the C API, so that the
// binding's SharedMemory and C programs come in through the same door as channels do.
#include <cerrno>
#include <cstdint>
#include <memory>
#include <new>

#include "segment.h"
#include "shmchannel.h"
#include "status.h"

using namespace shmch;

struct shmch_shm {
  Segment segment;
};

namespace {

// Validates the name, then maps it with `map(segment)`; *out only on success.
template <typename Map>
shmch_status map_named(const char* name, shmch_shm** out, shmch_error* err, Map map) {
  if (out == nullptr) return fail(err, SHMCH_E_INVALID_ARG, 0, nullptr, "out is NULL");
  *out = nullptr;
  shmch_status s = shmch_validate_name(name, err);
  if (s != SHMCH_OK) return s;
  std::unique_ptr<shmch_shm> shm(new (std::nothrow) shmch_shm);
  if (shm == nullptr) return fail(err, SHMCH_E_RESOURCE, ENOMEM, nullptr, nullptr);
  s = map(shm->segment);
  if (s == SHMCH_OK) *out = shm.release();
  return s;
}

}  // namespace

shmch_status shmch_shm_create(const char* name, size_t size, uint32_t mode, shmch_shm** out,
                              shmch_error* err) {
  if (size == 0) {
    if (out != nullptr) *out = nullptr;
    return fail(err, SHMCH_E_INVALID_SIZE, 0, nullptr, "size must be at least 1 byte");
  }
  return map_named(name, out, err, [&](Segment& segment) {
    return segment.create(name, size, mode, false, err);
  });
}

shmch_status shmch_shm_open(const char* name, shmch_shm** out, shmch_error* err) {
  return map_named(name, out, err, [&](Segment& segment) { return segment.open(name, 1, SIZE_MAX, err); });
}

uint8_t* shmch_shm_data(const shmch_shm* shm) { return shm != nullptr ? shm->segment.data() : nullptr; }

size_t shmch_shm_size(const shmch_shm* shm) { return shm != nullptr ? shm->segment.size() : 0; }

int shmch_shm_truncated(const shmch_shm* shm) { return shm != nullptr && shm->segment.lost() ? 1 : 0; }

void shmch_shm_close(shmch_shm* shm) { delete shm; }
