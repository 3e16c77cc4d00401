/*
 * http: skiff's wasi:http test function (WASI 0.2 component, C, wasi-libc, reactor).
 *
 * It exports wasi:http/incoming-handler@0.2.0#handle by its canonical ABI name and answers by
 * path:
 *
 *   /             200 "hello from a skiff function\n"
 *   /echo         200 with the request's body
 *   /sleep?ms=N   sleeps N ms, then 200 "slept N ms\n"
 *   /loop         spins forever (the host stops it at its timeout)
 *   /trap         traps (unreachable)
 *   /fetch?url=U  sends GET U (http://HOST[:PORT]/PATH) with wasi:http/outgoing-handler: 200
 *                 "fetched STATUS: BODY", or 502 "fetch failed: ERROR-CODE\n"
 *   /env          200 with its environment, a VAR=VALUE line each
 *   /noresponse   returns without a response
 *   anything else 404
 *
 * Each request prints "http: METHOD PATH" on stdout; /trap and /fetch failures also print on
 * stderr. wasi-libc targets WASI preview 1, which has no wasi:http, so those calls are imported
 * directly with their canonical ABI signatures (no wit-bindgen here); http.wit declares the same
 * functions for wit-component. tests/src/guests.rs builds it with
 *
 *     clang --target=wasm32-wasi -mexec-model=reactor -O2 -o http.wasm http.c
 *
 * then embeds http.wit and wraps it with the preview1 reactor adapter (stdio, env and clocks
 * become wasi:cli and wasi:clocks imports; `_initialize` runs at instantiation).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------------------------------- */
/* Canonical ABI                                                                             */
/* ---------------------------------------------------------------------------------------- */

typedef int32_t handle;

struct string {
    char *ptr;
    size_t len;
};

/* option<string> and variant method { ..., other(string) }: a u8 tag, the string at 4. */
struct tagged_string {
    uint8_t tag;
    struct string val;
};

/* result<own<T>> (no error payload): a u8 tag, the handle at 4. */
struct handle_result {
    uint8_t is_err;
    handle ok;
};

/* result<list<u8>, stream-error>: tag, then (ptr, len) or the stream-error (tag, handle). */
struct read_result {
    uint8_t is_err;
    union {
        struct {
            uint8_t *ptr;
            size_t len;
        } ok;
        struct {
            uint8_t tag;
            handle error;
        } err;
    } val;
};

/* result<_, stream-error>: the stream-error (alignment 4) is at offset 4. */
struct write_result {
    uint8_t is_err;
    struct {
        uint8_t tag;
        handle error;
    } err;
};

/* result<own<future-incoming-response>, error-code> and result<_, error-code>: error-code is
 * aligned to 8 (its option<u64> cases), so the payload is at 8; 40 bytes in all. */
struct code_result {
    uint8_t is_err;
    uint8_t pad[7];
    union {
        handle ok;
        uint8_t code;
        uint8_t bytes[32];
    } val;
};

/* option<result<result<own<incoming-response>, error-code>>>: tags at 0, 8, 16, payload at 24. */
struct future_get {
    uint8_t is_some;
    uint8_t pad0[7];
    uint8_t outer_is_err;
    uint8_t pad1[7];
    uint8_t inner_is_err;
    uint8_t pad2[7];
    union {
        handle ok;
        uint8_t code;
        uint8_t bytes[32];
    } val;
};

_Static_assert(offsetof(struct tagged_string, val) == 4, "option<string>");
_Static_assert(offsetof(struct handle_result, ok) == 4, "result<own>");
_Static_assert(offsetof(struct write_result, err) == 4, "result<_, stream-error>");
_Static_assert(offsetof(struct code_result, val) == 8 && sizeof(struct code_result) == 40, "code");
_Static_assert(offsetof(struct future_get, val) == 24 && sizeof(struct future_get) == 56, "get");

#define IMPORT(module, name) __attribute__((import_module(module), import_name(name)))
#define TYPES "wasi:http/types@0.2.0"
#define STREAMS "wasi:io/streams@0.2.0"

IMPORT(TYPES, "[constructor]fields") handle fields_new(void);
IMPORT(TYPES, "[method]incoming-request.method")
void request_method(handle req, struct tagged_string *ret);
IMPORT(TYPES, "[method]incoming-request.path-with-query")
void request_path(handle req, struct tagged_string *ret);
IMPORT(TYPES, "[method]incoming-request.consume")
void request_consume(handle req, struct handle_result *ret);
IMPORT(TYPES, "[method]incoming-body.stream")
void incoming_body_stream(handle body, struct handle_result *ret);
IMPORT(TYPES, "[constructor]outgoing-response") handle response_new(handle headers);
IMPORT(TYPES, "[method]outgoing-response.set-status-code")
int32_t response_set_status(handle resp, int32_t status);
IMPORT(TYPES, "[method]outgoing-response.body")
void response_body(handle resp, struct handle_result *ret);
IMPORT(TYPES, "[method]outgoing-body.write")
void outgoing_body_write(handle body, struct handle_result *ret);
IMPORT(TYPES, "[static]outgoing-body.finish")
void outgoing_body_finish(handle body, int32_t has_trailers, handle trailers,
                          struct code_result *ret);
IMPORT(TYPES, "[static]response-outparam.set")
void outparam_set(handle out, int32_t is_err, int32_t a, int32_t b, int64_t c, int32_t d,
                  int32_t e, int32_t f, int32_t g);
IMPORT(TYPES, "[constructor]outgoing-request") handle request_new(handle headers);
IMPORT(TYPES, "[method]outgoing-request.set-scheme")
int32_t request_set_scheme(handle req, int32_t is_some, int32_t scheme, char *ptr, size_t len);
IMPORT(TYPES, "[method]outgoing-request.set-authority")
int32_t request_set_authority(handle req, int32_t is_some, const char *ptr, size_t len);
IMPORT(TYPES, "[method]outgoing-request.set-path-with-query")
int32_t request_set_path(handle req, int32_t is_some, const char *ptr, size_t len);
IMPORT("wasi:http/outgoing-handler@0.2.0", "handle")
void outgoing_handle(handle req, int32_t has_options, handle options, struct code_result *ret);
IMPORT(TYPES, "[method]future-incoming-response.subscribe")
handle future_subscribe(handle future);
IMPORT(TYPES, "[method]future-incoming-response.get")
void future_get(handle future, struct future_get *ret);
IMPORT(TYPES, "[method]incoming-response.status") int32_t incoming_response_status(handle resp);
IMPORT(TYPES, "[method]incoming-response.consume")
void incoming_response_consume(handle resp, struct handle_result *ret);
IMPORT("wasi:io/poll@0.2.0", "[method]pollable.block") void pollable_block(handle p);
IMPORT(STREAMS, "[method]input-stream.blocking-read")
void input_read(handle stream, int64_t len, struct read_result *ret);
IMPORT(STREAMS, "[resource-drop]output-stream") void output_drop(handle stream);
IMPORT(STREAMS, "[method]output-stream.blocking-write-and-flush")
void output_write(handle stream, const uint8_t *ptr, size_t len, struct write_result *ret);

__attribute__((export_name("cabi_realloc")))
void *cabi_realloc(void *old, size_t old_size, size_t align, size_t new_size) {
    (void)old_size;
    (void)align;
    void *p = realloc(old, new_size);
    if (p == NULL) {
        abort();
    }
    return p;
}

/* ---------------------------------------------------------------------------------------- */
/* Helpers                                                                                   */
/* ---------------------------------------------------------------------------------------- */

/* A growable byte buffer. */
struct buf {
    char *data;
    size_t len, cap;
};

static void buf_add(struct buf *b, const void *data, size_t len) {
    if (b->len + len + 1 > b->cap) {
        b->cap = (b->len + len + 1) * 2;
        b->data = realloc(b->data, b->cap);
        if (b->data == NULL) {
            abort();
        }
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = 0;
}

static void buf_str(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

/* Reads an input stream to its end into b. */
static void read_all(handle stream, struct buf *b) {
    for (;;) {
        struct read_result r;
        input_read(stream, 64 * 1024, &r);
        if (r.is_err) {
            return; /* closed, or failed (e.g. past the body limit) */
        }
        buf_add(b, r.val.ok.ptr, r.val.ok.len);
        free(r.val.ok.ptr);
    }
}

/* Sends status and body as the response on out. */
static void respond(handle out, int status, const char *body, size_t len) {
    handle resp = response_new(fields_new());
    response_set_status(resp, status);
    struct handle_result body_res;
    response_body(resp, &body_res);
    /* The response is set before the body is written: the host streams it as it comes. */
    outparam_set(out, 0, resp, 0, 0, 0, 0, 0, 0);
    if (body_res.is_err) {
        return;
    }
    struct handle_result stream;
    outgoing_body_write(body_res.ok, &stream);
    if (!stream.is_err) {
        for (size_t off = 0; off < len;) {
            size_t n = len - off > 4096 ? 4096 : len - off;
            struct write_result w;
            output_write(stream.ok, (const uint8_t *)body + off, n, &w);
            if (w.is_err) {
                break;
            }
            off += n;
        }
        /* A body with its stream still open cannot be finished. */
        output_drop(stream.ok);
    }
    struct code_result fin;
    outgoing_body_finish(body_res.ok, 0, 0, &fin);
}

static void respond_str(handle out, int status, const char *body) {
    respond(out, status, body, strlen(body));
}

/* The value of query parameter name in path ("a=1&b=2" after the '?'), copied, or NULL. */
static char *query_param(const char *path, const char *name) {
    const char *q = strchr(path, '?');
    size_t n = strlen(name);
    while (q != NULL) {
        q++;
        if (strncmp(q, name, n) == 0 && q[n] == '=') {
            const char *v = q + n + 1;
            size_t len = strcspn(v, "&");
            char *out = malloc(len + 1);
            memcpy(out, v, len);
            out[len] = 0;
            return out;
        }
        q = strchr(q, '&');
    }
    return NULL;
}

static bool route(const char *path, const char *name) {
    size_t n = strlen(name);
    return strncmp(path, name, n) == 0 && (path[n] == 0 || path[n] == '?');
}

static const char *code_names[] = {
    "DNS-timeout", "DNS-error", "destination-not-found", "destination-unavailable",
    "destination-IP-prohibited", "destination-IP-unroutable", "connection-refused",
    "connection-terminated", "connection-timeout", "connection-read-timeout",
    "connection-write-timeout", "connection-limit-reached", "TLS-protocol-error",
    "TLS-certificate-error", "TLS-alert-received", "HTTP-request-denied",
    "HTTP-request-length-required", "HTTP-request-body-size", "HTTP-request-method-invalid",
    "HTTP-request-URI-invalid", "HTTP-request-URI-too-long", "HTTP-request-header-section-size",
    "HTTP-request-header-size", "HTTP-request-trailer-section-size",
    "HTTP-request-trailer-size", "HTTP-response-incomplete",
    "HTTP-response-header-section-size", "HTTP-response-header-size",
    "HTTP-response-body-size", "HTTP-response-trailer-section-size",
    "HTTP-response-trailer-size", "HTTP-response-transfer-coding",
    "HTTP-response-content-coding", "HTTP-response-timeout", "HTTP-upgrade-failed",
    "HTTP-protocol-error", "loop-detected", "configuration-error", "internal-error",
};

static const char *code_name(uint8_t code) {
    return code < sizeof(code_names) / sizeof(code_names[0]) ? code_names[code] : "unknown";
}

static void fetch_failed(handle out, const char *what) {
    char text[160];
    snprintf(text, sizeof text, "fetch failed: %s\n", what);
    fprintf(stderr, "http: %s", text);
    fflush(stderr);
    respond_str(out, 502, text);
}

/* GET url (http://HOST[:PORT][/PATH]) and answer with what came back. */
static void fetch(handle out, const char *url) {
    const char *prefix = "http://";
    if (url == NULL || strncmp(url, prefix, strlen(prefix)) != 0) {
        respond_str(out, 400, "fetch: url=http://HOST[:PORT]/PATH required\n");
        return;
    }
    const char *authority = url + strlen(prefix);
    size_t alen = strcspn(authority, "/");
    const char *path = authority[alen] ? authority + alen : "/";
    handle req = request_new(fields_new());
    request_set_scheme(req, 1, 0, NULL, 0);
    request_set_authority(req, 1, authority, alen);
    request_set_path(req, 1, path, strlen(path));
    struct code_result sent;
    outgoing_handle(req, 0, 0, &sent);
    if (sent.is_err) {
        fetch_failed(out, code_name(sent.val.code));
        return;
    }
    handle future = sent.val.ok;
    struct future_get got;
    for (;;) {
        future_get(future, &got);
        if (got.is_some) {
            break;
        }
        pollable_block(future_subscribe(future));
    }
    if (got.outer_is_err) {
        fetch_failed(out, "the response was already taken");
        return;
    }
    if (got.inner_is_err) {
        fetch_failed(out, code_name(got.val.code));
        return;
    }
    handle resp = got.val.ok;
    int status = incoming_response_status(resp);
    struct buf body = {0};
    char head[64];
    snprintf(head, sizeof head, "fetched %d: ", status);
    buf_str(&body, head);
    struct handle_result consumed;
    incoming_response_consume(resp, &consumed);
    if (!consumed.is_err) {
        struct handle_result stream;
        incoming_body_stream(consumed.ok, &stream);
        if (!stream.is_err) {
            read_all(stream.ok, &body);
        }
    }
    respond(out, 200, body.data, body.len);
    free(body.data);
}

extern char **environ;

__attribute__((export_name("wasi:http/incoming-handler@0.2.0#handle")))
void http_handle(handle request, handle out) {
    static const char *methods[] = {"GET",   "HEAD",    "POST",  "PUT",  "DELETE",
                                    "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    struct tagged_string method;
    request_method(request, &method);
    char method_name[16] = "OTHER";
    if (method.tag < 9) {
        snprintf(method_name, sizeof method_name, "%s", methods[method.tag]);
    }
    struct tagged_string p;
    request_path(request, &p);
    char *path = strdup("/");
    if (p.tag) {
        free(path);
        path = malloc(p.val.len + 1);
        memcpy(path, p.val.ptr, p.val.len);
        path[p.val.len] = 0;
    }
    printf("http: %s %s\n", method_name, path);
    fflush(stdout);

    if (route(path, "/")) {
        respond_str(out, 200, "hello from a skiff function\n");
    } else if (route(path, "/echo")) {
        struct buf body = {0};
        buf_str(&body, "");
        struct handle_result consumed;
        request_consume(request, &consumed);
        if (!consumed.is_err) {
            struct handle_result stream;
            incoming_body_stream(consumed.ok, &stream);
            if (!stream.is_err) {
                read_all(stream.ok, &body);
            }
        }
        respond(out, 200, body.data, body.len);
        free(body.data);
    } else if (route(path, "/sleep")) {
        char *ms = query_param(path, "ms");
        long n = ms ? strtol(ms, NULL, 10) : 0;
        struct timespec ts = {n / 1000, (n % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        char text[64];
        snprintf(text, sizeof text, "slept %ld ms\n", n);
        respond_str(out, 200, text);
    } else if (route(path, "/loop")) {
        volatile uint64_t spins = 0;
        for (;;) {
            spins++;
        }
    } else if (route(path, "/trap")) {
        fprintf(stderr, "http: trapping on purpose\n");
        fflush(stderr);
        __builtin_trap();
    } else if (route(path, "/fetch")) {
        fetch(out, query_param(path, "url"));
    } else if (route(path, "/env")) {
        struct buf body = {0};
        buf_str(&body, "");
        for (char **e = environ; e && *e; e++) {
            buf_str(&body, *e);
            buf_str(&body, "\n");
        }
        respond(out, 200, body.data, body.len);
        free(body.data);
    } else if (route(path, "/noresponse")) {
        /* Nothing: the host answers 500. */
    } else {
        respond_str(out, 404, "not found\n");
    }
    free(path);
}
