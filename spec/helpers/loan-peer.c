/*
 * A client on the frame API of shmchannel.h that sends and receives by reference (PROTOCOL §6),
 * for spec 98c:
 *
 *   loan-peer /name SIZE COUNT
 *
 * Says HELLO; then COUNT times: loans SIZE + 16 bytes of its pool, writes message i (pattern
 * byte j = (j * 31 + 7 + i) % 251) at start 0 or 16 of the loan and sends it as a NOTIFY by
 * reference, then does the same as a REQUEST (id i + 1) and waits for its answer: a RESPONSE
 * that must come LOANED (read through shmch_borrowed, checked to be the request's bytes
 * reversed, then given back with shmch_release) and a COMPLETE. Then sends the notification
 * "done" (copied), waits until its whole pool can be lent again (the server released every
 * notification and request it sent), and says BYE.
 *
 * Prints "pool P", per message "notify I SIZE HASH" and "response I SIZE HASH loaned|copied
 * ok|bad", then "released N" (the server's loans it gave back), "own-pool-back EXTENT", "done".
 * HASH is FNV-1a (32 bits, hex). Exit status 0 when all of that went through.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c99 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmchannel.h"

static uint32_t fnv1a(const uint8_t* p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
  return h;
}

static uint8_t pattern(uint32_t message, uint32_t j) { return (uint8_t)((j * 31u + 7u + message) % 251u); }

static int die(const char* what, shmch_status s) {
  fprintf(stderr, "loan-peer: %s: %s\n", what, shmch_status_string(s));
  return 1;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A loan of `size` bytes; while the pool is full, waits for the server to release (10 s). */
static shmch_status loan(shmch_channel* ch, uint32_t size, uint8_t** data, uint32_t* offset, uint32_t* extent) {
  double until = now_s() + 10;
  for (;;) {
    shmch_status s = shmch_loan(ch, size, data, offset, extent);
    if (s != SHMCH_E_FULL) return s;
    if (now_s() > until || shmch_peer_state(ch) == SHMCH_PEER_GONE) return SHMCH_E_FULL;
    shmch_wait(ch, 100);
  }
}

/* One frame, or one loan sent; while the ring is full, waits for the server to read. */
static shmch_status write_frame(shmch_channel* ch, uint8_t kind, const uint8_t* payload, uint32_t length) {
  for (;;) {
    shmch_status s = shmch_write(ch, kind, 0, length, payload, length);
    if (s != SHMCH_E_FULL) return s;
    shmch_wait(ch, 100);
    if (shmch_peer_state(ch) == SHMCH_PEER_GONE) return SHMCH_E_CLOSED;
  }
}

static shmch_status write_loan(shmch_channel* ch, uint8_t kind, uint32_t id, uint32_t offset, uint32_t start,
                               uint32_t length) {
  for (;;) {
    shmch_status s = shmch_write_loan(ch, kind, id, offset, start, length);
    if (s != SHMCH_E_FULL) return s;
    shmch_wait(ch, 100);
    if (shmch_peer_state(ch) == SHMCH_PEER_GONE) return SHMCH_E_CLOSED;
  }
}

/* Loans SIZE + 16 bytes, writes message `message` at start 0 or 16, sends it. */
static shmch_status send_loaned(shmch_channel* ch, uint8_t kind, uint32_t id, uint32_t message, uint32_t size,
                                uint32_t* hash) {
  uint8_t* data = NULL;
  uint32_t offset = 0;
  uint32_t extent = 0;
  shmch_status s = loan(ch, size + 16, &data, &offset, &extent);
  if (s != SHMCH_OK) return s;
  uint32_t start = (message % 2) * 16;
  for (uint32_t j = 0; j < size; j++) data[start + j] = pattern(message, j);
  *hash = fnv1a(data + start, size);
  s = write_loan(ch, kind, id, offset, start, size);
  if (s != SHMCH_OK) shmch_unloan(ch, offset);
  return s;
}

/* Reads until the COMPLETE of request `id`, checking its RESPONSE. *released counts the
 * server's loans given back. */
static int await_response(shmch_channel* ch, uint8_t* buf, size_t capacity, uint32_t message, uint32_t size,
                          uint32_t* released) {
  uint32_t id = message + 1;
  int answered = 0;
  double until = now_s() + 10;
  /* A copied RESPONSE may come in fragments: how much of it is still to come. */
  uint32_t fragment_left = 0;
  for (;;) {
    size_t got = 0;
    shmch_status s = shmch_read(ch, buf, capacity, &got);
    if (s != SHMCH_OK) return die("read", s);
    for (size_t at = 0; at + SHMCH_FRAME_HEADER_SIZE <= got;) {
      uint32_t length, frame_id, total;
      memcpy(&length, buf + at, 4);
      memcpy(&frame_id, buf + at + 8, 4);
      memcpy(&total, buf + at + 12, 4);
      uint8_t kind = buf[at + 4];
      uint8_t flags = buf[at + 5];
      const uint8_t* payload = buf + at + SHMCH_FRAME_HEADER_SIZE;
      at += SHMCH_FRAME_HEADER_SIZE + ((length + 7u) & ~7u);
      if (fragment_left > 0) {
        fragment_left -= length;
        continue;
      }
      if (kind == SHMCH_RESPONSE && frame_id == id && flags == SHMCH_FLAG_LOANED) {
        shmch_descriptor d;
        memcpy(&d, payload, sizeof d);
        const uint8_t* data = NULL;
        uint32_t extent = 0;
        s = shmch_borrowed(ch, d.offset, &data, &extent);
        if (s != SHMCH_OK) return die("borrowed", s);
        const uint8_t* m = data + d.start;
        int ok = total == size && d.start + total <= extent;
        for (uint32_t j = 0; ok && j < total; j++) ok = m[j] == pattern(message, size - 1 - j);
        printf("response %u %u %08x loaned %s\n", message, total, fnv1a(m, total), ok ? "ok" : "bad");
        s = shmch_release(ch, d.offset);
        if (s != SHMCH_OK) return die("release", s);
        (*released)++;
        answered = 1;
      } else if (kind == SHMCH_RESPONSE && frame_id == id) {
        printf("response %u %u ? copied bad\n", message, total);
        fragment_left = total - length;
        answered = 1;
      } else if (kind == SHMCH_COMPLETE && frame_id == id) {
        return answered ? 0 : die("response", SHMCH_E_CLOSED);
      } else if ((kind == SHMCH_ERROR && frame_id == id) || kind == SHMCH_BYE) {
        return die(kind == SHMCH_BYE ? "server said BYE" : "request failed", SHMCH_E_CLOSED);
      } else if (total > length) {
        fragment_left = total - length;
      }
    }
    if (got == 0) {
      if (now_s() > until || shmch_peer_state(ch) == SHMCH_PEER_GONE) return die("response", SHMCH_E_CLOSED);
      shmch_wait(ch, 100);
    }
  }
}

int main(int argc, char** argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: loan-peer /name SIZE COUNT\n");
    return 2;
  }
  uint32_t size = (uint32_t)strtoul(argv[2], NULL, 10);
  uint32_t count = (uint32_t)strtoul(argv[3], NULL, 10);
  shmch_channel* ch = NULL;
  shmch_error err = {0};
  shmch_status s = shmch_attach(argv[1], &ch, &err);
  if (s != SHMCH_OK) return die("attach", s);
  shmch_info info;
  shmch_get_info(ch, &info);
  printf("pool %u\n", info.pool_capacity);
  uint8_t* buf = malloc(info.ring_capacity);
  if (buf == NULL) return die("malloc", SHMCH_E_RESOURCE);
  uint32_t released = 0;
  int failed = 0;
  s = write_frame(ch, SHMCH_HELLO, NULL, 0);
  for (uint32_t i = 0; s == SHMCH_OK && !failed && i < count; i++) {
    uint32_t hash = 0;
    s = send_loaned(ch, SHMCH_NOTIFY, 0, i, size, &hash);
    if (s != SHMCH_OK) break;
    printf("notify %u %u %08x\n", i, size, hash);
    s = send_loaned(ch, SHMCH_REQUEST, i + 1, i, size, &hash);
    if (s != SHMCH_OK) break;
    failed = await_response(ch, buf, info.ring_capacity, i, size, &released);
    fflush(stdout);
  }
  if (s != SHMCH_OK || failed) {
    shmch_close(ch);
    free(buf);
    return s != SHMCH_OK ? die("send", s) : 1;
  }
  printf("released %u\n", released);
  s = write_frame(ch, SHMCH_NOTIFY, (const uint8_t*)"done", 4);
  /* Every loan of ours comes back once the server released what it borrowed: the whole pool
   * is one loan again. */
  uint8_t* data = NULL;
  uint32_t offset = 0;
  uint32_t extent = 0;
  if (s == SHMCH_OK) s = loan(ch, info.pool_capacity, &data, &offset, &extent);
  if (s == SHMCH_OK) {
    printf("own-pool-back %u\n", extent);
    s = shmch_unloan(ch, offset);
  }
  if (s == SHMCH_OK) s = write_frame(ch, SHMCH_BYE, NULL, 0);
  shmch_close(ch);
  free(buf);
  if (s != SHMCH_OK) return die("finish", s);
  printf("done\n");
  return 0;
}
