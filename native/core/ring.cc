#include "ring.h"

#include <algorithm>
#include <cstring>

#include "doorbell.h"
#include "layout.h"

namespace shmch {

namespace {

bool known_kind(uint8_t kind) { return kind >= SHMCH_HELLO && kind <= SHMCH_CANCEL; }
// The kinds whose message may be a loan.
bool loanable_kind(uint8_t kind) { return kind == SHMCH_NOTIFY || kind == SHMCH_REQUEST || kind == SHMCH_RESPONSE; }

// Called after a seq_cst fence that follows our publish. A plain load first: the flag is
// almost always 0 while the peer is busy, and an exchange would take the peer's cache line
// away on every frame. The fences on both sides keep the handshake of PROTOCOL.md §3 intact.
void ring_if_set(uint32_t* flag, uint32_t* doorbell) {
  if (__atomic_load_n(flag, __ATOMIC_RELAXED) != 0 && exchange_seq_cst(flag, 0) != 0) doorbell_ring(doorbell);
}

}  // namespace

// ---- writer ----

void RingWriter::attach(RingView ring, uint32_t start_head, uint32_t* peer_sleeping,
                        uint32_t* peer_doorbell) {
  ring_ = ring;
  peer_sleeping_ = peer_sleeping;
  peer_doorbell_ = peer_doorbell;
  reset_to(start_head);
}

void RingWriter::reset_to(uint32_t head) {
  head_ = head;
  last_tail_ = head;
  store_release(word32(ring_.control, off::kHead), head);
}

bool RingWriter::waiting_cleared() const {
  return load_acquire(word32(ring_.control, off::kWriterWaiting)) == 0;
}

shmch_status RingWriter::free_space(uint32_t* free) {
  uint32_t tail = load_acquire(word32(ring_.control, off::kTail));
  uint32_t used = head_ - tail;
  // The consumer's tail may only move forward, up to our head, in whole 8-byte steps.
  if (used > ring_.capacity || (used & 7u) != 0 ||
      static_cast<uint32_t>(tail - last_tail_) > static_cast<uint32_t>(head_ - last_tail_)) {
    return SHMCH_E_PROTOCOL;
  }
  last_tail_ = tail;
  *free = ring_.capacity - used;
  return SHMCH_OK;
}

void RingWriter::copy_in(uint32_t pos, const void* src, uint32_t n) {
  // memcpy from a null pointer is undefined even for 0 bytes, and empty payloads have one.
  if (n == 0) return;
  uint32_t at = pos & (ring_.capacity - 1);
  uint32_t first = std::min(n, ring_.capacity - at);
  std::memcpy(ring_.data + at, src, first);
  std::memcpy(ring_.data, static_cast<const uint8_t*>(src) + first, n - first);
}

shmch_status RingWriter::space_for(uint32_t need, uint32_t* free) {
  // The tail we saw last can only be behind the real one: if the frame fits by it, it fits.
  // Reloading the reader's tail on every frame would miss the cache on every frame.
  *free = ring_.capacity - (head_ - last_tail_);
  if (*free >= need) return SHMCH_OK;
  shmch_status s = free_space(free);
  if (s != SHMCH_OK || *free >= need) return s;
  // Say we wait, then look again: either we see the space the reader freed, or the
  // reader sees our flag (both seq_cst) and posts our doorbell.
  store_seq_cst(word32(ring_.control, off::kWriterWaiting), 1);
  fence_seq_cst();
  return free_space(free);
}

void RingWriter::publish(uint32_t bytes) {
  head_ += bytes;
  store_release(word32(ring_.control, off::kHead), head_);
  fence_seq_cst();
  ring_if_set(peer_sleeping_, peer_doorbell_);
}

shmch_status RingWriter::write(uint8_t kind, uint32_t id, uint32_t total, const uint8_t* payload,
                               uint32_t length) {
  // An empty frame of a nonempty message is what readers refuse (and what an announcement of
  // shmch_read_announcing looks like): never write one.
  if (!known_kind(kind) || length > total || (length == 0 && total > 0) || (length > 0 && payload == nullptr) ||
      length > ring_.capacity - SHMCH_FRAME_HEADER_SIZE) {
    return SHMCH_E_INVALID_ARG;
  }
  return append(FrameHeader{length, kind, 0, 0, id, total}, payload);
}

shmch_status RingWriter::write_loaned(uint8_t kind, uint32_t id, uint32_t total, const shmch_descriptor& d) {
  if (!loanable_kind(kind)) return SHMCH_E_INVALID_ARG;
  return append(FrameHeader{static_cast<uint32_t>(sizeof d), kind, SHMCH_FLAG_LOANED, 0, id, total}, reinterpret_cast<const uint8_t*>(&d));
}

shmch_status RingWriter::append(const FrameHeader& h, const uint8_t* payload) {
  uint32_t frame_size = SHMCH_FRAME_HEADER_SIZE + align8(h.length);
  uint32_t free = 0;
  shmch_status s = space_for(frame_size, &free);
  if (s != SHMCH_OK) return s;
  if (free < frame_size) return SHMCH_E_FULL;
  copy_in(head_, &h, sizeof h);
  copy_in(head_ + SHMCH_FRAME_HEADER_SIZE, payload, h.length);
  static const uint8_t zeros[8] = {0};
  copy_in(head_ + SHMCH_FRAME_HEADER_SIZE + h.length, zeros, align8(h.length) - h.length);
  publish(frame_size);
  return SHMCH_OK;
}

shmch_status RingWriter::write_frames(const uint8_t* frames, size_t length, uint32_t max_total,
                                      uint32_t max_payload, size_t* consumed) {
  *consumed = 0;
  if (length > 0 && frames == nullptr) return SHMCH_E_INVALID_ARG;
  // Validate the whole batch first: an error writes nothing. The batch is our process's own
  // memory, but the ring must never carry a frame the peer would reject.
  for (size_t at = 0; at < length;) {
    if (length - at < SHMCH_FRAME_HEADER_SIZE) return SHMCH_E_INVALID_ARG;
    FrameHeader h;
    std::memcpy(&h, frames + at, sizeof h);
    if (!known_kind(h.kind) || h.flags != 0 || h.reserved != 0 || h.length != h.total ||
        h.total > max_total || h.length > max_payload) {
      return SHMCH_E_INVALID_ARG;
    }
    size_t frame_size = SHMCH_FRAME_HEADER_SIZE + align8(h.length);
    if (frame_size > length - at) return SHMCH_E_INVALID_ARG;
    at += frame_size;
  }
  // A batch larger than the ring can never fit whole: asking for one byte more than the ring
  // makes space_for() announce the wait, as it does whenever the batch does not fit.
  uint32_t need = length > ring_.capacity ? ring_.capacity + 1 : static_cast<uint32_t>(length);
  uint32_t free = 0;
  shmch_status s = space_for(need, &free);
  if (s != SHMCH_OK) return s;
  // The longest prefix of whole frames that fits.
  size_t take = 0;
  while (take < length) {
    uint32_t frame_length;
    std::memcpy(&frame_length, frames + take, sizeof frame_length);
    size_t frame_size = SHMCH_FRAME_HEADER_SIZE + align8(frame_length);
    // The lengths were validated above; bounding again costs nothing should they change.
    if (frame_size > length - take || take + frame_size > free) break;
    take += frame_size;
  }
  if (take == 0) return SHMCH_OK;
  copy_in(head_, frames, static_cast<uint32_t>(take));
  publish(static_cast<uint32_t>(take));
  *consumed = take;
  return SHMCH_OK;
}

// ---- reader ----

void RingReader::attach(RingView ring, uint32_t start_tail, uint32_t max_message_size,
                        uint32_t* writer_doorbell, PoolBorrower* pool) {
  ring_ = ring;
  pool_ = pool;
  max_message_size_ = max_message_size;
  writer_doorbell_ = writer_doorbell;
  reset_to(start_tail);
}

void RingReader::reset_to(uint32_t tail) {
  tail_.store(tail, std::memory_order_relaxed);
  msg_remaining_ = 0;
  store_release(word32(ring_.control, off::kTail), tail);
}

bool RingReader::readable() const {
  return load_acquire(word32(ring_.control, off::kHead)) != tail_.load(std::memory_order_relaxed);
}

void RingReader::copy_out(uint32_t pos, void* dst, uint32_t n) const {
  if (n == 0) return;
  uint32_t at = pos & (ring_.capacity - 1);
  uint32_t first = std::min(n, ring_.capacity - at);
  std::memcpy(dst, ring_.data + at, first);
  std::memcpy(static_cast<uint8_t*>(dst) + first, ring_.data, n - first);
}

// Copies the header at tail + consumed out once and validates the copy (the peer may change the
// ring under us): a frame of `used - consumed` readable bytes that may follow what was read.
shmch_status RingReader::next_frame(uint32_t tail, uint32_t used, uint32_t consumed, FrameHeader* h) const {
  copy_out(tail + consumed, h, sizeof *h);
  bool loaned = h->flags == SHMCH_FLAG_LOANED;
  if (!known_kind(h->kind) || (h->flags != 0 && !loaned) || h->reserved != 0 ||
      h->total > max_message_size_ || h->length > ring_.capacity - SHMCH_FRAME_HEADER_SIZE) {
    return SHMCH_E_PROTOCOL;
  }
  // A loan is a whole message: one frame holding its descriptor, never inside another message.
  if (loaned ? !loanable_kind(h->kind) || h->length != sizeof(shmch_descriptor) || msg_remaining_ != 0
             : h->length > h->total) {
    return SHMCH_E_PROTOCOL;
  }
  // The writer publishes whole frames only.
  if (SHMCH_FRAME_HEADER_SIZE + align8(h->length) > used - consumed) return SHMCH_E_PROTOCOL;
  if (msg_remaining_ == 0) {
    if (!loaned && h->total > 0 && h->length == 0) return SHMCH_E_PROTOCOL;
  } else if (h->kind != msg_kind_ || h->id != msg_id_ || h->total != msg_total_ || h->length == 0 ||
             h->length > msg_remaining_) {
    return SHMCH_E_PROTOCOL;
  }
  return SHMCH_OK;
}

void RingReader::start_message(const FrameHeader& h, uint32_t unread) {
  msg_remaining_ = unread;
  msg_kind_ = h.kind;
  msg_id_ = h.id;
  msg_total_ = h.total;
}

void RingReader::account(const FrameHeader& h) {
  if (h.flags == SHMCH_FLAG_LOANED) return;  // whole in one frame
  if (msg_remaining_ == 0) {
    start_message(h, h.total - h.length);
  } else {
    msg_remaining_ -= h.length;
  }
}

void RingReader::release_copied(uint32_t tail, uint32_t consumed, uint32_t* released) {
  // Each quarter of the ring (the largest frame) goes back as soon as it is copied, so the
  // writer refills it while we copy the rest.
  if (consumed - *released >= ring_.capacity / 4) {
    release(tail + consumed);
    *released = consumed;
  }
}

shmch_status RingReader::used_bytes(uint32_t tail, uint32_t* used) const {
  *used = load_acquire(word32(ring_.control, off::kHead)) - tail;
  return *used > ring_.capacity || (*used & 7u) != 0 ? SHMCH_E_PROTOCOL : SHMCH_OK;
}

shmch_status RingReader::read(uint8_t* dst, size_t dst_capacity, uint32_t large_from, size_t* written) {
  *written = 0;
  uint32_t tail = tail_.load(std::memory_order_relaxed);
  uint32_t used = 0;
  if (used_bytes(tail, &used) != SHMCH_OK) return SHMCH_E_PROTOCOL;

  uint32_t consumed = 0;
  uint32_t released = 0;
  size_t out = 0;
  while (used - consumed >= SHMCH_FRAME_HEADER_SIZE) {
    FrameHeader h;
    if (next_frame(tail, used, consumed, &h) != SHMCH_OK) return SHMCH_E_PROTOCOL;
    bool loaned = h.flags == SHMCH_FLAG_LOANED;
    if (msg_remaining_ == 0 && !loaned && h.total >= large_from) {
      // A large message starts: announce it (its header, length 0) and leave all of it in the
      // ring for read_continuation, which copies it straight into the message.
      if (out > 0) break;
      if (dst_capacity < SHMCH_FRAME_HEADER_SIZE) return SHMCH_E_INVALID_ARG;
      FrameHeader announcement = h;
      announcement.length = 0;
      std::memcpy(dst, &announcement, sizeof announcement);
      start_message(h, h.total);
      out = SHMCH_FRAME_HEADER_SIZE;
      break;
    }
    uint32_t frame_size = SHMCH_FRAME_HEADER_SIZE + align8(h.length);
    if (out + frame_size > dst_capacity) {
      if (out == 0) return SHMCH_E_INVALID_ARG;
      break;
    }
    std::memcpy(dst + out, &h, sizeof h);
    copy_out(tail + consumed + SHMCH_FRAME_HEADER_SIZE, dst + out + SHMCH_FRAME_HEADER_SIZE,
             align8(h.length));
    if (loaned) {
      // Validate our copy, which is what the caller reads, not the ring the peer can still change.
      shmch_descriptor d;
      std::memcpy(&d, dst + out + SHMCH_FRAME_HEADER_SIZE, sizeof d);
      shmch_status s = pool_ == nullptr ? SHMCH_E_PROTOCOL : pool_->accept(d, h.total);
      // Out of memory to record it: hand over what came before, and leave it in the ring.
      if (s == SHMCH_E_RESOURCE && out > 0) break;
      if (s != SHMCH_OK) return s;
    }
    account(h);
    consumed += frame_size;
    out += frame_size;
    release_copied(tail, consumed, &released);
  }
  // Whole frames only: a remainder shorter than a header is corruption, unless dst was full.
  if (used - consumed != 0 && used - consumed < SHMCH_FRAME_HEADER_SIZE) return SHMCH_E_PROTOCOL;
  if (consumed != released) release(tail + consumed);
  *written = out;
  return SHMCH_OK;
}

shmch_status RingReader::read_continuation(uint8_t* dst, size_t dst_capacity, size_t* written) {
  *written = 0;
  if (msg_remaining_ == 0 || dst_capacity != msg_remaining_) return SHMCH_E_INVALID_ARG;
  uint32_t tail = tail_.load(std::memory_order_relaxed);
  uint32_t used = 0;
  if (used_bytes(tail, &used) != SHMCH_OK) return SHMCH_E_PROTOCOL;

  uint32_t consumed = 0;
  uint32_t released = 0;
  size_t out = 0;
  while (msg_remaining_ > 0 && used - consumed >= SHMCH_FRAME_HEADER_SIZE) {
    FrameHeader h;
    if (next_frame(tail, used, consumed, &h) != SHMCH_OK) return SHMCH_E_PROTOCOL;
    // next_frame() checked h.length <= msg_remaining_, which is what dst has left.
    copy_out(tail + consumed + SHMCH_FRAME_HEADER_SIZE, dst + out, h.length);
    account(h);
    consumed += SHMCH_FRAME_HEADER_SIZE + align8(h.length);
    out += h.length;
    release_copied(tail, consumed, &released);
  }
  if (msg_remaining_ > 0 && used - consumed != 0 && used - consumed < SHMCH_FRAME_HEADER_SIZE) {
    return SHMCH_E_PROTOCOL;
  }
  if (consumed != released) release(tail + consumed);
  *written = out;
  return SHMCH_OK;
}

void RingReader::release(uint32_t tail) {
  tail_.store(tail, std::memory_order_relaxed);
  store_release(word32(ring_.control, off::kTail), tail);
  fence_seq_cst();
  ring_if_set(word32(ring_.control, off::kWriterWaiting), writer_doorbell_);
}

}  // namespace shmch
