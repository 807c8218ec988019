/*
 * A peer on the message API of shmchannel_message.h, for spec 98e (cross-runtime). It has the
 * same command line and prints the same lines as spec/helpers/cross-peer.py and
 * spec/helpers/cross-peer-node.ts, so the spec pairs any two runtimes the same way.
 *
 *   cross-peer server /name RING CLIENTS
 *     Serves CLIENTS clients one after the other: prints "ready", then "hello" and "bye" per
 *     client. Answers a request "fail:CODE:MESSAGE" with an ERROR of that code and message,
 *     "stream:N" with N responses "part I" and a COMPLETE, "block..." not at all (prints
 *     "blocking TEXT ID", and "cancel ID" when the client cancels it), anything else with its
 *     bytes reversed. Prints each notification as "notify SIZE HASH"; answers a notification
 *     "ask" with a request "block" to the client ("asked", then "ask answered" or, when the
 *     client leaves first, "ask error peer-left"), any other with a notification of its bytes
 *     reversed.
 *   cross-peer client /name SIZE
 *     Requests SIZE pattern bytes ("reply SIZE HASH"), "stream:3" ("stream part 0|part 1|part
 *     2"), "fail:E_CROSS:..." ("error CODE|MESSAGE"); notifies SIZE pattern bytes and prints
 *     the notification that comes back ("note SIZE HASH"); closes. Exit 0 when all went through.
 *   cross-peer client-pending /name
 *     Requests "block", prints "sent", and prints how it ended: "pending error peer-left" when
 *     the server left with it in flight.
 *   cross-peer client-hold /name
 *     Notifies "ask" and never answers requests ("blocking TEXT ID"); runs until killed.
 *
 * HASH is FNV-1a (32 bits, hex) of the bytes; pattern byte i is (i * 31 + 7) % 251.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmchannel_message.h"

static uint32_t fnv1a(const uint8_t* p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
  return h;
}

static int die(const char* what, shmch_status s) {
  fprintf(stderr, "cross-peer: %s: %s\n", what, shmch_status_string(s));
  return 1;
}

static void say(const char* line) {
  printf("%s\n", line);
  fflush(stdout);
}

/* The next message, waiting as long as it takes; 0 and *status set when the endpoint ended. */
static int next_message(shmch_endpoint* ep, shmch_message* m, shmch_status* status) {
  for (;;) {
    *status = shmch_endpoint_receive(ep, m);
    if (*status != SHMCH_OK) return 0;
    if (m->kind != 0) return 1;
    shmch_endpoint_wait(ep, -1);
  }
}

static uint8_t* reversed(const uint8_t* data, size_t size) {
  uint8_t* out = malloc(size + 1);
  if (out != NULL)
    for (size_t i = 0; i < size; i++) out[i] = data[size - 1 - i];
  return out;
}

static int starts_with(const shmch_message* m, const char* prefix) {
  size_t n = strlen(prefix);
  return m->size >= n && memcmp(m->data, prefix, n) == 0;
}

static shmch_status answer(shmch_endpoint* ep, const shmch_message* m) {
  char* text = malloc(m->size + 1);
  if (text == NULL) return SHMCH_E_RESOURCE;
  if (m->size) memcpy(text, m->data, m->size);
  text[m->size] = '\0';
  shmch_status s = SHMCH_OK;
  if (starts_with(m, "fail:")) {
    char* code = text + 5;
    char* message = strchr(code, ':');
    if (message != NULL) *message++ = '\0';
    s = shmch_endpoint_fail(ep, m->id, code, message);
  } else if (starts_with(m, "stream:")) {
    long n = strtol(text + 7, NULL, 10);
    char part[32];
    for (long i = 0; i < n && s == SHMCH_OK; i++) {
      int len = snprintf(part, sizeof part, "part %ld", i);
      s = shmch_endpoint_respond(ep, m->id, (const uint8_t*)part, (size_t)len);
    }
    if (s == SHMCH_OK) s = shmch_endpoint_complete(ep, m->id);
  } else if (starts_with(m, "block")) {
    printf("blocking %s %u\n", text, m->id);
  } else {
    uint8_t* back = reversed(m->data, m->size);
    s = back == NULL ? SHMCH_E_RESOURCE : shmch_endpoint_reply(ep, m->id, back, m->size);
    free(back);
  }
  free(text);
  return s;
}

static int run_server(const char* name, uint32_t ring, long clients) {
  shmch_endpoint_options options = {0};
  options.ring_capacity = ring;
  options.max_message_size = 1 << 20;
  shmch_endpoint* ep = NULL;
  shmch_status s = shmch_endpoint_open(name, SHMCH_SERVER, &options, &ep, NULL);
  if (s != SHMCH_OK) return die("open", s);
  say("ready");
  long served = 0;
  uint32_t asked = 0; /* our request to the client in flight, 0 if none */
  shmch_message m;
  while (served < clients && next_message(ep, &m, &s)) {
    if (m.kind == SHMCH_HELLO) printf("hello\n");
    if (m.kind == SHMCH_BYE) {
      if (asked != 0) printf("ask error peer-left\n"), asked = 0;
      printf("bye\n"), served++;
    }
    if (m.kind == SHMCH_CANCEL) printf("cancel %u\n", m.id);
    if (m.kind == SHMCH_REQUEST && (s = answer(ep, &m)) != SHMCH_OK) break;
    if ((m.kind == SHMCH_COMPLETE || m.kind == SHMCH_ERROR) && m.id == asked) {
      if (m.kind == SHMCH_COMPLETE) printf("ask answered\n");
      else printf("ask error %s\n", m.error_code != NULL ? m.error_code : "(none)");
      asked = 0;
    }
    if (m.kind == SHMCH_NOTIFY) {
      printf("notify %zu %08x\n", m.size, fnv1a(m.data, m.size));
      if (m.size == 3 && memcmp(m.data, "ask", 3) == 0) {
        if ((s = shmch_endpoint_request(ep, (const uint8_t*)"block", 5, &asked)) != SHMCH_OK) break;
        printf("asked\n");
      } else {
        uint8_t* back = reversed(m.data, m.size);
        s = back == NULL ? SHMCH_E_RESOURCE : shmch_endpoint_notify(ep, back, m.size);
        free(back);
        if (s != SHMCH_OK) break;
      }
    }
    fflush(stdout);
  }
  shmch_endpoint_close(ep, 5000);
  return s == SHMCH_OK ? 0 : die("serve", s);
}

static shmch_endpoint* open_client(const char* name) {
  shmch_endpoint_options options = {0};
  options.connect_timeout_ms = 20000;
  shmch_endpoint* ep = NULL;
  shmch_status s = shmch_endpoint_open(name, SHMCH_CLIENT, &options, &ep, NULL);
  if (s != SHMCH_OK) die("open", s);
  return ep;
}

/* Waits for the end of our request `id`, printing its values with `print`; 1 if it completed
 * or failed (an ERROR is printed as "error CODE|MESSAGE"), 0 if the server left. */
static int await_request(shmch_endpoint* ep, uint32_t id, int stream) {
  shmch_message m;
  shmch_status s;
  int first = 1;
  while (next_message(ep, &m, &s)) {
    if (m.kind == SHMCH_BYE) return 0;
    if (m.id != id) continue;
    if (m.kind == SHMCH_RESPONSE && stream) printf("%s%.*s", first ? "stream " : "|", (int)m.size, (const char*)m.data);
    if (m.kind == SHMCH_RESPONSE && !stream) printf("reply %zu %08x", m.size, fnv1a(m.data, m.size));
    if (m.kind == SHMCH_RESPONSE) first = 0;
    if (m.kind == SHMCH_ERROR) printf("error %s|%s", m.error_code != NULL ? m.error_code : "(none)", m.error_message);
    if (m.kind == SHMCH_COMPLETE || m.kind == SHMCH_ERROR) {
      say("");
      return 1;
    }
  }
  return 0;
}

static int run_client(const char* name, size_t size) {
  shmch_endpoint* ep = open_client(name);
  if (ep == NULL) return 1;
  uint8_t* data = malloc(size + 1);
  if (data == NULL) return 1;
  for (size_t i = 0; i < size; i++) data[i] = (uint8_t)((i * 31 + 7) % 251);
  const char* fail = "fail:E_CROSS:refused \"as asked\" \xe2\x9c\x93";
  uint32_t id = 0;
  shmch_status s;
  if ((s = shmch_endpoint_request(ep, data, size, &id)) != SHMCH_OK) return die("request", s);
  if (!await_request(ep, id, 0)) return die("reply", SHMCH_E_CLOSED);
  if ((s = shmch_endpoint_request(ep, (const uint8_t*)"stream:3", 8, &id)) != SHMCH_OK) return die("request", s);
  if (!await_request(ep, id, 1)) return die("stream", SHMCH_E_CLOSED);
  if ((s = shmch_endpoint_request(ep, (const uint8_t*)fail, strlen(fail), &id)) != SHMCH_OK) return die("request", s);
  if (!await_request(ep, id, 0)) return die("error", SHMCH_E_CLOSED);
  if ((s = shmch_endpoint_notify(ep, data, size)) != SHMCH_OK) return die("notify", s);
  shmch_message m;
  int noted = 0;
  while (!noted && next_message(ep, &m, &s)) {
    if (m.kind == SHMCH_BYE) break;
    if (m.kind == SHMCH_NOTIFY) printf("note %zu %08x\n", m.size, fnv1a(m.data, m.size)), noted = 1;
  }
  free(data);
  fflush(stdout);
  if (!noted) return die("note", SHMCH_E_CLOSED);
  s = shmch_endpoint_close(ep, 5000);
  return s == SHMCH_OK ? 0 : die("close", s);
}

static int run_client_pending(const char* name) {
  shmch_endpoint* ep = open_client(name);
  if (ep == NULL) return 1;
  uint32_t id = 0;
  shmch_status s = shmch_endpoint_request(ep, (const uint8_t*)"block", 5, &id);
  if (s != SHMCH_OK) return die("request", s);
  say("sent");
  shmch_message m;
  while (next_message(ep, &m, &s)) {
    if (m.kind == SHMCH_BYE) {
      say("pending error peer-left");
      break;
    }
    if ((m.kind == SHMCH_COMPLETE || m.kind == SHMCH_ERROR) && m.id == id) say("pending answered");
  }
  /* After the BYE, the endpoint of a client whose server left is over. */
  s = shmch_endpoint_receive(ep, &m);
  printf("then %s\n", shmch_status_string(s));
  shmch_endpoint_close(ep, 1000);
  return 0;
}

static int run_client_hold(const char* name) {
  shmch_endpoint* ep = open_client(name);
  if (ep == NULL) return 1;
  shmch_status s = shmch_endpoint_notify(ep, (const uint8_t*)"ask", 3);
  if (s != SHMCH_OK) return die("notify", s);
  shmch_message m;
  while (next_message(ep, &m, &s) && m.kind != SHMCH_BYE) {
    if (m.kind == SHMCH_REQUEST) printf("blocking %.*s %u\n", (int)m.size, (const char*)m.data, m.id);
    fflush(stdout);
  }
  shmch_endpoint_close(ep, 1000);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 5 && strcmp(argv[1], "server") == 0)
    return run_server(argv[2], (uint32_t)strtoul(argv[3], NULL, 10), strtol(argv[4], NULL, 10));
  if (argc == 4 && strcmp(argv[1], "client") == 0) return run_client(argv[2], strtoul(argv[3], NULL, 10));
  if (argc == 3 && strcmp(argv[1], "client-pending") == 0) return run_client_pending(argv[2]);
  if (argc == 3 && strcmp(argv[1], "client-hold") == 0) return run_client_hold(argv[2]);
  fprintf(stderr, "usage: cross-peer server /name RING CLIENTS | client /name SIZE | client-pending /name | "
                  "client-hold /name\n");
  return 2;
}
