/*
 * notify: a C client over the frame API of shmchannel.h. It attaches to a server's channel,
 * says HELLO, sends its arguments as one NOTIFY (in fragments if the ring needs them), says BYE
 * and leaves: everything a client must do by itself (docs/PROTOCOL.md §2.1, §5.2, §5.3).
 *
 *   notify /name some text      # a Node server: new Channel('/name', 'server')
 *
 * Built by `npm run build:c` into build/c/examples/notify. Exit status 0 once the notification
 * is in the ring; 1 with the status name on stderr otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmchannel.h"

/* Ends the program over a failed call, naming the status and what the core said. */
static int fail(const char* what, shmch_status s, const shmch_error* err) {
  fprintf(stderr, "notify: %s: %s (%s)", what, shmch_status_string(s), shmch_status_description(s));
  if (err != NULL && err->detail != NULL) fprintf(stderr, ": %s", err->detail);
  if (err != NULL && err->sys_errno != 0) fprintf(stderr, " [%s errno %d]", err->syscall ? err->syscall : "?", err->sys_errno);
  fputc('\n', stderr);
  return 1;
}

/* One frame; while the ring is full, waits for the server to make room (or to leave). */
static shmch_status write_frame(shmch_channel* ch, uint8_t kind, uint32_t total, const uint8_t* payload,
                                uint32_t length) {
  for (;;) {
    shmch_status s = shmch_write(ch, kind, 0, total, payload, length);
    if (s != SHMCH_E_FULL) return s;
    shmch_wait(ch, 100);
    /* A wait returns at once for a server that left: look before writing again. */
    if (shmch_peer_state(ch) == SHMCH_PEER_GONE) return SHMCH_E_CLOSED;
  }
}

/* A whole message: fragments of at most max_frame_payload bytes, each carrying the total. */
static shmch_status write_message(shmch_channel* ch, uint8_t kind, const uint8_t* data, uint32_t size) {
  shmch_info info;
  shmch_get_info(ch, &info);
  if (size == 0) return write_frame(ch, kind, 0, NULL, 0);
  for (uint32_t sent = 0; sent < size;) {
    uint32_t n = size - sent < info.max_frame_payload ? size - sent : info.max_frame_payload;
    shmch_status s = write_frame(ch, kind, size, data + sent, n);
    if (s != SHMCH_OK) return s;
    sent += n;
  }
  return SHMCH_OK;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: notify /name text...\n");
    return 2;
  }
  /* The text: the arguments after the name, joined by spaces. */
  size_t size = 0;
  for (int i = 2; i < argc; i++) size += strlen(argv[i]) + 1;
  char* text = malloc(size);
  if (text == NULL) return 1;
  text[0] = '\0';
  for (int i = 2; i < argc; i++) {
    if (i > 2) strcat(text, " ");
    strcat(text, argv[i]);
  }

  shmch_error err = {0};
  shmch_channel* ch = NULL;
  shmch_status s = shmch_attach(argv[1], &ch, &err);
  if (s != SHMCH_OK) {
    free(text);
    return fail("attach", s, &err);
  }
  /* Attaching writes no frame: the server counts the client as connected from its HELLO. */
  s = write_frame(ch, SHMCH_HELLO, 0, NULL, 0);
  if (s == SHMCH_OK) s = write_message(ch, SHMCH_NOTIFY, (const uint8_t*)text, (uint32_t)strlen(text));
  /* BYE is the last frame; shmch_close() then sets CLIENT_CLOSED, which frees the slot. */
  if (s == SHMCH_OK) s = write_frame(ch, SHMCH_BYE, 0, NULL, 0);
  shmch_close(ch);
  free(text);
  return s == SHMCH_OK ? 0 : fail("send", s, NULL);
}
