/*
 * net: skiff's TCP test guest (WASI preview 2 component, C, wasi-libc, wasi:sockets).
 *
 * argv[1] picks a command, like probe.c: `net serve PORT TEXT [COUNT]` answers COUNT connections
 * with TEXT, `net fetch HOST PORT [TRIES]` prints what a server sends (HOST an address, or a name
 * resolved through wasi:sockets/ip-name-lookup, its first IPv4 address), `net lookup NAME...`
 * prints each NAME's addresses (or `NAME error: CODE`), `net bind PORT` only
 * checks that it may listen on PORT. Run it without arguments for the usage; bad usage exits 2,
 * a failed network call prints "COMMAND: STEP: ERROR" on stderr and exits 1.
 *
 * wasi-libc targets WASI preview 1, which has no sockets, so the wasi:sockets and wasi:io calls
 * are imported directly with their canonical ABI signatures (no wit-bindgen here); net.wit
 * declares the same functions for wit-component. tests/src/guests.rs builds it with
 *
 *     clang --target=wasm32-wasi -O2 -o net.wasm net.c
 *
 * then embeds net.wit and wraps it with the preview1 command adapter, which turns the stdio and
 * argv imports into wasi:cli ones.
 */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXIT_USAGE 2

#define RETRY_MS 250
/* blocking-write-and-flush takes at most 4096 bytes per call. */
#define WRITE_CHUNK 4096
#define READ_CHUNK (64 * 1024)

/* ---------------------------------------------------------------------------------------- */
/* Canonical ABI                                                                             */
/* ---------------------------------------------------------------------------------------- */

/*
 * Resources cross the boundary as i32 handles. A function whose results flatten to more than
 * one value (MAX_FLAT_RESULTS = 1) gets a pointer to a result area as its last parameter; the
 * structs below are those areas. Their C layout is the canonical one: a result/variant is a u8
 * tag followed by its payload at the alignment of the widest case, fields at natural alignment.
 */

typedef int32_t handle;

/* result<_, error-code>: the payload is a u8 enum (alignment 1), so the code is at offset 1. */
struct unit_result {
    uint8_t is_err;
    uint8_t code;
};

/* result<own<T>, error-code>: the widest case is the i32 handle, so both cases are at offset 4. */
struct handle_result {
    uint8_t is_err;
    union {
        handle ok;
        uint8_t code;
    } val;
};

/* result<tuple<input-stream, output-stream>, error-code>: handles at 4 and 8, a code at 4. */
struct connect_result {
    uint8_t is_err;
    union {
        struct {
            handle in, out;
        } ok;
        uint8_t code;
    } val;
};

/* result<tuple<tcp-socket, input-stream, output-stream>, error-code>: handles at 4, 8, 12. */
struct accept_result {
    uint8_t is_err;
    union {
        struct {
            handle socket, in, out;
        } ok;
        uint8_t code;
    } val;
};

/* stream-error: variant { last-operation-failed(own<error>), closed }: tag at 0, handle at 4. */
enum { STREAM_LAST_OPERATION_FAILED, STREAM_CLOSED };
struct stream_error {
    uint8_t tag;
    handle error;
};

/* result<list<u8>, stream-error>: a list is (ptr, len), both i32, so either case is at 4. */
struct read_result {
    uint8_t is_err;
    union {
        struct {
            uint8_t *ptr;
            size_t len;
        } ok;
        struct stream_error err;
    } val;
};

/* result<_, stream-error>: the stream-error (alignment 4) is at offset 4. */
struct write_result {
    uint8_t is_err;
    struct stream_error err;
};

/* string: (ptr, len). */
struct string {
    char *ptr;
    size_t len;
};

_Static_assert(offsetof(struct unit_result, code) == 1, "result<_, error-code>");
_Static_assert(offsetof(struct handle_result, val) == 4, "result<own, error-code>");
_Static_assert(sizeof(struct accept_result) == 16, "result<tuple<own x3>, error-code>");
_Static_assert(offsetof(struct read_result, val.err.error) == 8, "result<list<u8>, stream-error>");
_Static_assert(offsetof(struct write_result, err.error) == 8, "result<_, stream-error>");

/* error-code of wasi:sockets/network, in WIT order. */
enum error_code {
    UNKNOWN,
    ACCESS_DENIED,
    NOT_SUPPORTED,
    INVALID_ARGUMENT,
    OUT_OF_MEMORY,
    TIMEOUT,
    CONCURRENCY_CONFLICT,
    NOT_IN_PROGRESS,
    WOULD_BLOCK,
    INVALID_STATE,
    NEW_SOCKET_LIMIT,
    ADDRESS_NOT_BINDABLE,
    ADDRESS_IN_USE,
    REMOTE_UNREACHABLE,
    CONNECTION_REFUSED,
    CONNECTION_RESET,
    CONNECTION_ABORTED,
    DATAGRAM_TOO_LARGE,
    NAME_UNRESOLVABLE,
    TEMPORARY_RESOLVER_FAILURE,
    PERMANENT_RESOLVER_FAILURE,
};

static const char *const error_names[] = {
    "unknown",
    "access-denied",
    "not-supported",
    "invalid-argument",
    "out-of-memory",
    "timeout",
    "concurrency-conflict",
    "not-in-progress",
    "would-block",
    "invalid-state",
    "new-socket-limit",
    "address-not-bindable",
    "address-in-use",
    "remote-unreachable",
    "connection-refused",
    "connection-reset",
    "connection-aborted",
    "datagram-too-large",
    "name-unresolvable",
    "temporary-resolver-failure",
    "permanent-resolver-failure",
};

_Static_assert(sizeof error_names / sizeof error_names[0] == PERMANENT_RESOLVER_FAILURE + 1,
               "one name per error-code");

/* Socket helpers return NET_OK or an error_code. */
#define NET_OK (-1)

/* ip-address-family and the ip-socket-address variant: case 0 is ipv4 in both. */
#define IPV4 0

/*
 * ip-socket-address flattens to the variant tag plus the cases' slots joined: ipv4 has 5
 * (port, 4 octets), ipv6 has 11 (port, flow-info, 8 segments, scope-id), all i32, so 12 i32s
 * in all. An ipv4 address fills the first 5 slots and leaves the rest 0.
 */
#define IP_SOCKET_ADDRESS                                                                         \
    int32_t tag, int32_t port, int32_t s1, int32_t s2, int32_t s3, int32_t s4, int32_t s5,        \
        int32_t s6, int32_t s7, int32_t s8, int32_t s9, int32_t s10

#define IMPORT(module, name) __attribute__((import_module(module), import_name(name)))
#define INSTANCE_NETWORK "wasi:sockets/instance-network@0.2.0"
#define TCP "wasi:sockets/tcp@0.2.0"
#define TCP_CREATE_SOCKET "wasi:sockets/tcp-create-socket@0.2.0"
#define IO_ERROR "wasi:io/error@0.2.0"
#define IO_POLL "wasi:io/poll@0.2.0"
#define IO_STREAMS "wasi:io/streams@0.2.0"
#define IP_NAME_LOOKUP "wasi:sockets/ip-name-lookup@0.2.0"

IMPORT(INSTANCE_NETWORK, "instance-network")
extern handle instance_network(void);

IMPORT(TCP_CREATE_SOCKET, "create-tcp-socket")
extern void create_tcp_socket(int32_t family, struct handle_result *ret);

/* self, network and the address are 14 flat params, within MAX_FLAT_PARAMS (16). */
typedef void start_fn(handle self, handle network, IP_SOCKET_ADDRESS, struct unit_result *ret);
/* A method of only self returning result<_, error-code>: (self, retptr). */
typedef void method_fn(handle self, struct unit_result *ret);

IMPORT(TCP, "[method]tcp-socket.start-bind")
extern start_fn tcp_start_bind;
IMPORT(TCP, "[method]tcp-socket.finish-bind")
extern method_fn tcp_finish_bind;
IMPORT(TCP, "[method]tcp-socket.start-listen")
extern method_fn tcp_start_listen;
IMPORT(TCP, "[method]tcp-socket.finish-listen")
extern method_fn tcp_finish_listen;
IMPORT(TCP, "[method]tcp-socket.accept")
extern void tcp_accept(handle self, struct accept_result *ret);
IMPORT(TCP, "[method]tcp-socket.start-connect")
extern start_fn tcp_start_connect;
IMPORT(TCP, "[method]tcp-socket.finish-connect")
extern void tcp_finish_connect(handle self, struct connect_result *ret);
IMPORT(TCP, "[method]tcp-socket.subscribe")
extern handle tcp_subscribe(handle self);
IMPORT(TCP, "[resource-drop]tcp-socket")
extern void tcp_drop(handle self);

IMPORT(IO_POLL, "[method]pollable.block")
extern void pollable_block(handle self);
IMPORT(IO_POLL, "[resource-drop]pollable")
extern void pollable_drop(handle self);

/* len: u64 flattens to an i64. */
IMPORT(IO_STREAMS, "[method]input-stream.blocking-read")
extern void input_blocking_read(handle self, int64_t len, struct read_result *ret);
IMPORT(IO_STREAMS, "[resource-drop]input-stream")
extern void input_drop(handle self);
/* contents: list<u8> flattens to (ptr, len). */
IMPORT(IO_STREAMS, "[method]output-stream.blocking-write-and-flush")
extern void output_blocking_write_and_flush(handle self, const void *ptr, size_t len,
                                            struct write_result *ret);
IMPORT(IO_STREAMS, "[resource-drop]output-stream")
extern void output_drop(handle self);

IMPORT(IO_ERROR, "[method]error.to-debug-string")
extern void error_to_debug_string(handle self, struct string *ret);
IMPORT(IO_ERROR, "[resource-drop]error")
extern void error_drop(handle self);

/*
 * The host allocates list and string results (blocking-read, to-debug-string) in our memory
 * through this export, so they are freed with free(). malloc's 16-byte alignment covers every
 * canonical ABI type, and it returns a real block even for 0 bytes. It must not call the host
 * (see main).
 */
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
/* Sockets and streams                                                                       */
/* ---------------------------------------------------------------------------------------- */

/* An accepted or connected socket with its two streams. */
struct connection {
    handle socket, in, out;
};

/* finish-bind, start-listen or finish-listen. */
static int call(method_fn *method, handle socket) {
    struct unit_result r;
    method(socket, &r);
    return r.is_err ? r.code : NET_OK;
}

/* start-bind or start-connect with the IPv4 address ADDR:PORT. */
static int start_with(start_fn *start, handle socket, handle network, const uint8_t addr[4],
                      uint16_t port) {
    struct unit_result r;
    start(socket, network, IPV4, port, addr[0], addr[1], addr[2], addr[3], 0, 0, 0, 0, 0, 0, &r);
    return r.is_err ? r.code : NET_OK;
}

/* Blocks until the socket has progress to report (a connection to accept, a connect done). */
static void wait_for(handle socket) {
    handle pollable = tcp_subscribe(socket);
    pollable_block(pollable);
    pollable_drop(pollable);
}

static int create_socket(handle *socket) {
    struct handle_result r;
    create_tcp_socket(IPV4, &r);
    if (r.is_err) {
        return r.val.code;
    }
    *socket = r.val.ok;
    return NET_OK;
}

/* A new socket listening on 0.0.0.0:PORT. On failure *step names the call that failed. */
static int listen_on(handle network, uint16_t port, handle *listener, const char **step) {
    static const uint8_t any[4] = {0, 0, 0, 0};
    int err;
    *step = "socket";
    if ((err = create_socket(listener)) != NET_OK) {
        return err;
    }
    *step = "bind";
    if ((err = start_with(tcp_start_bind, *listener, network, any, port)) != NET_OK ||
        (err = call(tcp_finish_bind, *listener)) != NET_OK) {
        return err;
    }
    *step = "listen";
    if ((err = call(tcp_start_listen, *listener)) != NET_OK) {
        return err;
    }
    return call(tcp_finish_listen, *listener);
}

static int accept_connection(handle listener, struct connection *c) {
    for (;;) {
        struct accept_result r;
        tcp_accept(listener, &r);
        if (!r.is_err) {
            *c = (struct connection){r.val.ok.socket, r.val.ok.in, r.val.ok.out};
            return NET_OK;
        }
        if (r.val.code != WOULD_BLOCK) {
            return r.val.code;
        }
        wait_for(listener);
    }
}

/*
 * One connection attempt. finish-connect reports would-block until the handshake is done. A
 * socket whose connect failed cannot be reused, so it is dropped here.
 */
static int connect_once(handle network, const uint8_t addr[4], uint16_t port,
                        struct connection *c) {
    handle socket;
    int err = create_socket(&socket);
    if (err != NET_OK) {
        return err;
    }
    if ((err = start_with(tcp_start_connect, socket, network, addr, port)) != NET_OK) {
        tcp_drop(socket);
        return err;
    }
    for (;;) {
        struct connect_result r;
        tcp_finish_connect(socket, &r);
        if (!r.is_err) {
            *c = (struct connection){socket, r.val.ok.in, r.val.ok.out};
            return NET_OK;
        }
        if (r.val.code != WOULD_BLOCK) {
            tcp_drop(socket);
            return r.val.code;
        }
        wait_for(socket);
    }
}

/* Errors worth another try: nothing listening yet, or the server not reachable yet. */
static bool is_transient(int err) {
    return err == CONNECTION_REFUSED || err == TIMEOUT || err == REMOTE_UNREACHABLE;
}

/* The streams are children of the socket and must go first. */
static void close_connection(const struct connection *c) {
    input_drop(c->in);
    output_drop(c->out);
    tcp_drop(c->socket);
}

/* "closed", or the host's description of the failure (never freed: the process is short). */
static const char *stream_error_text(const struct stream_error *e) {
    if (e->tag == STREAM_CLOSED) {
        return "closed";
    }
    struct string s;
    error_to_debug_string(e->error, &s);
    error_drop(e->error);
    char *text = strndup(s.ptr, s.len);
    free(s.ptr);
    return text != NULL ? text : "last-operation-failed";
}

/* Writes all of DATA; returns NULL, or what went wrong. */
static const char *write_all(handle out, const char *data, size_t len) {
    while (len > 0) {
        size_t n = len < WRITE_CHUNK ? len : WRITE_CHUNK;
        struct write_result r;
        output_blocking_write_and_flush(out, data, n, &r);
        if (r.is_err) {
            return stream_error_text(&r.err);
        }
        data += n;
        len -= n;
    }
    return NULL;
}

/* Copies the stream to stdout until it is closed; returns NULL, or what went wrong. */
static const char *copy_to_stdout(handle in) {
    for (;;) {
        struct read_result r;
        input_blocking_read(in, READ_CHUNK, &r);
        if (r.is_err) {
            return r.val.err.tag == STREAM_CLOSED ? NULL : stream_error_text(&r.val.err);
        }
        fwrite(r.val.ok.ptr, 1, r.val.ok.len, stdout);
        free(r.val.ok.ptr);
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Small helpers                                                                             */
/* ---------------------------------------------------------------------------------------- */

/* Parses a non-negative decimal integer; returns -1 if `s` is not one. */
static long parse_count(const char *s) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0) {
        return -1;
    }
    return v;
}

/* Parses a port number (0..65535); returns -1 if `s` is not one. */
static long parse_port(const char *s) {
    long port = parse_count(s);
    return port > UINT16_MAX ? -1 : port;
}

/* Parses a dotted-quad IPv4 address into `out`. */
/* result<own<resolve-address-stream>, error-code>: the handle at offset 4. */
struct lookup_started {
    uint8_t is_err;
    union {
        handle ok;
        uint8_t code;
    } val;
};

/* result<option<ip-address>, error-code>: option at 2, the address's tag at 4, octets at 6. */
struct lookup_next {
    uint8_t is_err;
    union {
        struct {
            uint8_t is_some;
            uint8_t pad1;
            uint8_t tag; /* 0: ipv4, 1: ipv6 */
            uint8_t pad2;
            union {
                uint8_t v4[4];
                uint16_t v6[8];
            } addr;
        } ok;
        uint8_t code;
    } val;
};
_Static_assert(offsetof(struct lookup_next, val.ok.addr) == 6, "ip-address payload");

IMPORT(IP_NAME_LOOKUP, "resolve-addresses")
extern void resolve_addresses(handle network, const char *name, size_t len,
                              struct lookup_started *ret);
IMPORT(IP_NAME_LOOKUP, "[method]resolve-address-stream.resolve-next-address")
extern void resolve_next_address(handle stream, struct lookup_next *ret);
IMPORT(IP_NAME_LOOKUP, "[method]resolve-address-stream.subscribe")
extern handle resolve_subscribe(handle stream);
IMPORT(IP_NAME_LOOKUP, "[resource-drop]resolve-address-stream")
extern void resolve_drop(handle stream);

/* The next answer of a resolve stream, waiting for it: NET_OK with *next filled, or the error. */
static int next_address(handle stream, struct lookup_next *next) {
    for (;;) {
        resolve_next_address(stream, next);
        if (!next->is_err) {
            return NET_OK;
        }
        if (next->val.code != WOULD_BLOCK) {
            return next->val.code;
        }
        handle ready = resolve_subscribe(stream);
        pollable_block(ready);
        pollable_drop(ready);
    }
}

/* NAME's first IPv4 address, through the host's resolver; NET_OK or the error code. */
static int resolve_ipv4(handle network, const char *name, uint8_t out[4]) {
    struct lookup_started started;
    resolve_addresses(network, name, strlen(name), &started);
    if (started.is_err) {
        return started.val.code;
    }
    int err = NAME_UNRESOLVABLE;
    struct lookup_next next;
    while ((err = next_address(started.val.ok, &next)) == NET_OK) {
        if (!next.val.ok.is_some) {
            err = NAME_UNRESOLVABLE;
            break;
        }
        if (next.val.ok.tag == 0) {
            memcpy(out, next.val.ok.addr.v4, 4);
            break;
        }
    }
    resolve_drop(started.val.ok);
    return err;
}

static bool parse_ipv4(const char *s, uint8_t out[4]) {
    for (int i = 0; i < 4; i++) {
        if (*s < '0' || *s > '9') {
            return false;
        }
        char *end = NULL;
        unsigned long octet = strtoul(s, &end, 10);
        if (octet > 255 || *end != (i < 3 ? '.' : '\0')) {
            return false;
        }
        out[i] = (uint8_t)octet;
        s = end + 1;
    }
    return true;
}

/* Sleeps `ms` milliseconds. wasi-libc implements nanosleep with poll_oneoff on a clock. */
static void sleep_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---------------------------------------------------------------------------------------- */
/* Commands: each gets the operands after the command name and returns the exit code.        */
/* ---------------------------------------------------------------------------------------- */

/*
 * serve PORT TEXT [COUNT]: answer COUNT (default 1) connections, one at a time, with TEXT. A
 * client that hangs up first (a TCP health probe connects and closes) fails its write: that is
 * said on stderr and the server goes on; the exit code is 1 if any write failed.
 */
static int cmd_serve(int argc, char **argv) {
    long port = parse_port(argv[0]);
    long count = argc > 2 ? parse_count(argv[2]) : 1;
    if (port < 0 || count < 0) {
        fprintf(stderr, "serve: bad port or count\n");
        return EXIT_USAGE;
    }
    const char *text = argv[1];
    handle listener;
    const char *step;
    int err = listen_on(instance_network(), (uint16_t)port, &listener, &step);
    if (err != NET_OK) {
        fprintf(stderr, "serve: %s %ld: %s\n", step, port, error_names[err]);
        return 1;
    }
    printf("listening on %ld\n", port);
    fflush(stdout);
    int status = 0;
    for (long i = 0; i < count; i++) {
        struct connection c;
        if ((err = accept_connection(listener, &c)) != NET_OK) {
            fprintf(stderr, "serve: accept: %s\n", error_names[err]);
            return 1;
        }
        const char *failed = write_all(c.out, text, strlen(text));
        if (failed == NULL) {
            failed = write_all(c.out, "\n", 1);
        }
        close_connection(&c);
        if (failed != NULL) {
            fprintf(stderr, "serve: write: %s\n", failed);
            status = 1;
        }
    }
    return status;
}

/* fetch HOST PORT [TRIES]: connect (TRIES attempts, default 1), print all the server sends. */
static int cmd_fetch(int argc, char **argv) {
    uint8_t addr[4];
    long port = parse_port(argv[1]);
    long tries = argc > 2 ? parse_count(argv[2]) : 1;
    if (argv[0][0] == '\0' || port < 0 || tries < 1) {
        fprintf(stderr, "fetch: bad host, port or tries\n");
        return EXIT_USAGE;
    }
    handle network = instance_network();
    int err;
    if (!parse_ipv4(argv[0], addr) && (err = resolve_ipv4(network, argv[0], addr)) != NET_OK) {
        fprintf(stderr, "fetch: resolve %s: %s\n", argv[0], error_names[err]);
        return 1;
    }
    struct connection c;
    for (long attempt = 1;; attempt++) {
        err = connect_once(network, addr, (uint16_t)port, &c);
        if (err == NET_OK || attempt >= tries || !is_transient(err)) {
            break;
        }
        sleep_ms(RETRY_MS);
    }
    if (err != NET_OK) {
        fprintf(stderr, "fetch: connect %s:%ld: %s\n", argv[0], port, error_names[err]);
        return 1;
    }
    const char *failed = copy_to_stdout(c.in);
    close_connection(&c);
    if (failed != NULL) {
        fprintf(stderr, "fetch: read: %s\n", failed);
        return 1;
    }
    return 0;
}

/* lookup NAME...: one line per name, `NAME ADDRESS...` or `NAME error: CODE`; exit 1 if any
 * name did not resolve. */
static int cmd_lookup(int argc, char **argv) {
    handle network = instance_network();
    int failed = 0;
    for (int i = 0; i < argc; i++) {
        const char *name = argv[i];
        struct lookup_started started;
        resolve_addresses(network, name, strlen(name), &started);
        if (started.is_err) {
            printf("%s error: %s\n", name, error_names[started.val.code]);
            failed = 1;
            continue;
        }
        int found = 0, err;
        struct lookup_next next;
        printf("%s", name);
        while ((err = next_address(started.val.ok, &next)) == NET_OK && next.val.ok.is_some) {
            found++;
            if (next.val.ok.tag == 0) {
                const uint8_t *a = next.val.ok.addr.v4;
                printf(" %u.%u.%u.%u", a[0], a[1], a[2], a[3]);
            } else {
                const uint16_t *v = next.val.ok.addr.v6;
                printf(" %x:%x:%x:%x:%x:%x:%x:%x", v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]);
            }
        }
        if (err != NET_OK) {
            printf(" error: %s", error_names[err]);
        }
        printf("\n");
        resolve_drop(started.val.ok);
        failed |= found == 0;
    }
    fflush(stdout);
    return failed;
}

/* bind PORT: whether this instance may listen on 0.0.0.0:PORT. */
static int cmd_bind(int argc, char **argv) {
    (void)argc;
    long port = parse_port(argv[0]);
    if (port < 0) {
        fprintf(stderr, "bind: bad port %s\n", argv[0]);
        return EXIT_USAGE;
    }
    handle listener;
    const char *step;
    int err = listen_on(instance_network(), (uint16_t)port, &listener, &step);
    printf("bind %ld: %s\n", port, err == NET_OK ? "ok" : error_names[err]);
    return err == NET_OK ? 0 : 1;
}

/* ---------------------------------------------------------------------------------------- */
/* Dispatch                                                                                  */
/* ---------------------------------------------------------------------------------------- */

struct command {
    const char *name;
    int min_args; /* operands after the command name */
    int max_args;
    int (*run)(int argc, char **argv);
    const char *help;
};

static const struct command commands[] = {
    {"serve", 2, 3, cmd_serve, "serve PORT TEXT [COUNT]    answer COUNT connections with TEXT"},
    {"fetch", 2, 3, cmd_fetch, "fetch HOST PORT [TRIES]    print what the server sends"},
    {"lookup", 1, 64, cmd_lookup, "lookup NAME...             print each NAME's addresses"},
    {"bind", 1, 1, cmd_bind, "bind PORT                  print 'bind PORT: ok' or the error"},
};

#define COMMAND_COUNT (sizeof commands / sizeof commands[0])

static int usage(void) {
    fputs("usage: net COMMAND [ARGS...]\ncommands:\n", stderr);
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        fprintf(stderr, "  %s\n", commands[i].help);
    }
    return EXIT_USAGE;
}

static int run_command(int argc, char **argv) {
    if (argc < 2) {
        return usage();
    }
    int nargs = argc - 2;
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        const struct command *c = &commands[i];
        if (strcmp(argv[1], c->name) != 0) {
            continue;
        }
        if (nargs < c->min_args || nargs > c->max_args) {
            fprintf(stderr, "net %s: wrong number of operands\n", c->name);
            return usage();
        }
        return c->run(nargs, argv + 2);
    }
    fprintf(stderr, "net: unknown command '%s'\n", argv[1]);
    return usage();
}

/*
 * Debian's wasi-libc crt1-command.o leaves constructors and destructors to wasm-ld, which then
 * wraps every export in them, cabi_realloc included: each host allocation would end in
 * __wasm_call_dtors, whose stdio flush calls the host while the host is still lowering a result
 * (realloc runs with may_leave cleared), and that traps. A module that calls __wasm_call_ctors
 * itself gets no wrappers; exit() runs the destructors.
 */
extern void __wasm_call_ctors(void);

int main(int argc, char **argv) {
    __wasm_call_ctors();
    exit(run_command(argc, argv));
}
