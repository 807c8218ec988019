// One direction of the channel: a single-producer, single-consumer byte ring of frames.
// Each side keeps its own counter privately and only publishes it; the peer's counter is
// re-validated on every read, because the peer (or anyone with write access) may corrupt it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "pool.h"
#include "shmchannel.h"

namespace shmch {

// A frame header as on the wire (docs/PROTOCOL.md §2).
struct FrameHeader {
  uint32_t length;
  uint8_t kind;
  uint8_t flags;
  uint16_t reserved;
  uint32_t id;
  uint32_t total;
};
static_assert(sizeof(FrameHeader) == SHMCH_FRAME_HEADER_SIZE, "frame header is 16 bytes");

struct RingView {
  uint8_t* control = nullptr;  // 128-byte control block
  uint8_t* data = nullptr;     // capacity bytes
  uint32_t capacity = 0;       // validated power of two, private copy
};

class RingWriter {
 public:
  void attach(RingView ring, uint32_t start_head, uint32_t* peer_sleeping, uint32_t* peer_doorbell);
  // Appends one frame and publishes it; SHMCH_E_FULL leaves the ring untouched.
  shmch_status write(uint8_t kind, uint32_t id, uint32_t total, const uint8_t* payload,
                     uint32_t length);
  // Appends one frame flagged SHMCH_FLAG_LOANED: a message of `total` bytes described by `d`.
  shmch_status write_loaned(uint8_t kind, uint32_t id, uint32_t total, const shmch_descriptor& d);
  // Appends the longest prefix of whole frames of `frames` that fits (see shmch_write_frames).
  shmch_status write_frames(const uint8_t* frames, size_t length, uint32_t max_total,
                            uint32_t max_payload, size_t* consumed);
  uint32_t head() const { return head_; }
  void reset_to(uint32_t head);
  // After a FULL write: true once the reader has cleared writer_waiting, i.e. freed space
  // (and rung our doorbell, which a sleeper that looked at the bell too late would miss).
  bool waiting_cleared() const;

 private:
  shmch_status free_space(uint32_t* free);
  // The free space by the cached tail, or by the reader's current tail if `need` does not fit;
  // if it still does not fit, announces the writer waiting (see write()).
  shmch_status space_for(uint32_t need, uint32_t* free);
  void publish(uint32_t bytes);
  shmch_status append(const FrameHeader& h, const uint8_t* payload);
  void copy_in(uint32_t pos, const void* src, uint32_t n);

  RingView ring_;
  uint32_t head_ = 0;
  uint32_t last_tail_ = 0;
  uint32_t* peer_sleeping_ = nullptr;
  uint32_t* peer_doorbell_ = nullptr;
};

class RingReader {
 public:
  // `pool` validates and holds the loans that LOANED frames describe (its owner is this ring's
  // writer); without a pool such a frame is a violation.
  void attach(RingView ring, uint32_t start_tail, uint32_t max_message_size,
              uint32_t* writer_doorbell, PoolBorrower* pool);
  // Copies whole validated frames into dst, announcing messages of large_from bytes or more
  // (see shmch_read_announcing; shmch_read passes UINT32_MAX).
  shmch_status read(uint8_t* dst, size_t dst_capacity, uint32_t large_from, size_t* written);
  // Copies the payloads of the message in progress into dst (see shmch_read_continuation).
  shmch_status read_continuation(uint8_t* dst, size_t dst_capacity, size_t* written);
  bool readable() const;
  uint32_t tail() const { return tail_.load(std::memory_order_relaxed); }
  void reset_to(uint32_t tail);

 private:
  void copy_out(uint32_t pos, void* dst, uint32_t n) const;
  shmch_status used_bytes(uint32_t tail, uint32_t* used) const;
  shmch_status next_frame(uint32_t tail, uint32_t used, uint32_t consumed, FrameHeader* h) const;
  // Follows the message a frame (validated by next_frame) belongs to.
  void account(const FrameHeader& h);
  // The message h starts is in progress, `unread` of its bytes still to come.
  void start_message(const FrameHeader& h, uint32_t unread);
  // Publishes the tail once another quarter of the ring has been copied since *released.
  void release_copied(uint32_t tail, uint32_t consumed, uint32_t* released);
  // Publishes a new tail and wakes a writer that waits for space.
  void release(uint32_t tail);


  RingView ring_;
  std::atomic<uint32_t> tail_{0};  // read by the waiting thread
  uint32_t max_message_size_ = 0;
  uint32_t* writer_doorbell_ = nullptr;
  PoolBorrower* pool_ = nullptr;
  // The message being reassembled: continuation frames must match it.
  uint32_t msg_remaining_ = 0;
  uint8_t msg_kind_ = 0;
  uint32_t msg_id_ = 0;
  uint32_t msg_total_ = 0;
};

}  // namespace shmch
