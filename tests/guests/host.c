/*
 * host: skiff's test guest for the host interfaces of wit/ (WASI preview 2 component, C,
 * wasi-libc): wasi:config/store, wasi:keyvalue/{store,atomics}, wasi:logging/logging.
 *
 * argv[1] picks a command: `host config KEY` prints KEY=VALUE (or `KEY: not set`), `host
 * config-all` prints every KEY=VALUE, `host get BUCKET KEY` and `host set BUCKET KEY VALUE` read
 * and write a keyvalue bucket, `host incr BUCKET KEY` adds 1 to KEY and prints KEY=N, `host del
 * BUCKET KEY` deletes it, `host count BUCKET KEY MS N` increments N times MS ms apart, `host keys
 * BUCKET` lists its keys, `host setmany BUCKET K=V...`, `host getmany BUCKET K...` and `host
 * delmany BUCKET K...` are wasi:keyvalue/batch calls, `host log LEVEL CONTEXT MESSAGE` emits
 * one wasi:logging record. Bad
 * usage exits 2; a failed host call prints "host COMMAND: ERROR" on stderr and exits 1.
 *
 * wasi-libc targets WASI preview 1, so the host interfaces are imported by their canonical ABI
 * names (no wit-bindgen), as net.c does; host.wit declares the world, over wit/'s packages.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXIT_USAGE 2
#define IMPORT(module, name) __attribute__((import_module(module), import_name(name)))

/* string and list<u8>: (ptr, len). */
struct bytes {
    char *ptr;
    size_t len;
};

/*
 * wasi:config/store.error and wasi:keyvalue/store.error are variants whose cases carry at most a
 * string: a u8 tag, the string at offset 4.
 */
struct error {
    uint8_t tag;
    struct bytes text;
};

/* result<option<string>, error> (and option<list<u8>>): tags at 0 and 4, the payload at 8. */
struct option_result {
    uint8_t is_err;
    union {
        struct {
            uint8_t is_some;
            struct bytes value;
        } ok;
        struct error err;
    } val;
};

/* result<list<tuple<string, string>>, error>. */
struct pair {
    struct bytes key, value;
};
struct pairs_result {
    uint8_t is_err;
    union {
        struct {
            struct pair *ptr;
            size_t len;
        } ok;
        struct error err;
    } val;
};

/* result<own<bucket>, error> and result<_, error>. */
struct handle_result {
    uint8_t is_err;
    union {
        int32_t ok;
        struct error err;
    } val;
};

/* result<u64, error>: the payload's alignment is 8. */
struct u64_result {
    uint8_t is_err;
    union {
        uint64_t ok;
        struct error err;
    } val;
};

/* result<key-response, error>: key-response is { keys: list<string>, cursor: option<u64> }, of
 * alignment 8, so the payload is at 8, the cursor's tag at 16 and its value at 24. */
struct keys_result {
    uint8_t is_err;
    union {
        struct {
            struct bytes *keys;
            size_t len;
            uint8_t has_cursor;
            uint64_t cursor;
        } ok;
        struct error err;
    } val;
};

/* tuple<string, list<u8>>, and option<tuple<string, list<u8>>> (tag at 0, tuple at 4). */
struct entry {
    struct bytes key, value;
};
struct maybe_entry {
    uint8_t is_some;
    struct entry entry;
};

/* result<list<option<tuple<string, list<u8>>>>, error>. */
struct entries_result {
    uint8_t is_err;
    union {
        struct {
            struct maybe_entry *ptr;
            size_t len;
        } ok;
        struct error err;
    } val;
};

_Static_assert(offsetof(struct keys_result, val.ok.has_cursor) == 16, "key-response.cursor");
_Static_assert(offsetof(struct keys_result, val.ok.cursor) == 24, "option<u64> value");
_Static_assert(sizeof(struct maybe_entry) == 20, "option<tuple<string, list<u8>>>");
_Static_assert(offsetof(struct option_result, val.ok.value) == 8, "result<option<string>, error>");
_Static_assert(offsetof(struct option_result, val.err.text) == 8, "error payload");
_Static_assert(offsetof(struct handle_result, val) == 4, "result<own<bucket>, error>");
_Static_assert(offsetof(struct u64_result, val) == 8, "result<u64, error>");
_Static_assert(sizeof(struct pair) == 16, "tuple<string, string>");

IMPORT("wasi:config/store@0.2.0-rc.1", "get")
extern void config_get(const char *key, size_t key_len, struct option_result *ret);
IMPORT("wasi:config/store@0.2.0-rc.1", "get-all")
extern void config_get_all(struct pairs_result *ret);

IMPORT("wasi:keyvalue/store@0.2.0-draft", "open")
extern void kv_open(const char *name, size_t name_len, struct handle_result *ret);
IMPORT("wasi:keyvalue/store@0.2.0-draft", "[method]bucket.get")
extern void kv_get(int32_t bucket, const char *key, size_t key_len, struct option_result *ret);
IMPORT("wasi:keyvalue/store@0.2.0-draft", "[method]bucket.set")
extern void kv_set(int32_t bucket, const char *key, size_t key_len, const char *value,
                   size_t value_len, struct handle_result *ret);
IMPORT("wasi:keyvalue/store@0.2.0-draft", "[method]bucket.delete")
extern void kv_delete(int32_t bucket, const char *key, size_t key_len, struct handle_result *ret);
IMPORT("wasi:keyvalue/store@0.2.0-draft", "[resource-drop]bucket")
extern void kv_drop(int32_t bucket);
IMPORT("wasi:keyvalue/store@0.2.0-draft", "[method]bucket.list-keys")
extern void kv_list_keys(int32_t bucket, int32_t has_cursor, uint64_t cursor,
                         struct keys_result *ret);
IMPORT("wasi:keyvalue/batch@0.2.0-draft", "get-many")
extern void kv_get_many(int32_t bucket, const struct bytes *keys, size_t len,
                        struct entries_result *ret);
IMPORT("wasi:keyvalue/batch@0.2.0-draft", "set-many")
extern void kv_set_many(int32_t bucket, const struct entry *entries, size_t len,
                        struct handle_result *ret);
IMPORT("wasi:keyvalue/batch@0.2.0-draft", "delete-many")
extern void kv_delete_many(int32_t bucket, const struct bytes *keys, size_t len,
                           struct handle_result *ret);
IMPORT("wasi:keyvalue/atomics@0.2.0-draft", "increment")
extern void kv_increment(int32_t bucket, const char *key, size_t key_len, uint64_t delta,
                         struct u64_result *ret);

IMPORT("wasi:logging/logging@0.1.0-draft", "log")
extern void log_record(int32_t level, const char *context, size_t context_len,
                       const char *message, size_t message_len);

/* The host allocates strings and lists in our memory through this; see main. */
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

static const char *command = "host";

/* Prints an error variant (config: upstream, io; keyvalue: no-such-store, access-denied, other). */
static int failed(const char *step, const struct error *e, bool keyvalue) {
    static const char *const kv_cases[] = {"no-such-store", "access-denied", "other"};
    static const char *const config_cases[] = {"upstream", "io"};
    const char *name = keyvalue ? (e->tag < 3 ? kv_cases[e->tag] : "?")
                                : (e->tag < 2 ? config_cases[e->tag] : "?");
    bool has_text = keyvalue ? e->tag == 2 : true;
    if (has_text) {
        fprintf(stderr, "host %s: %s: %s: %.*s\n", command, step, name, (int)e->text.len,
                e->text.ptr);
    } else {
        fprintf(stderr, "host %s: %s: %s\n", command, step, name);
    }
    return 1;
}

static int config(int argc, char **argv) {
    if (argc != 1) {
        return EXIT_USAGE;
    }
    struct option_result r;
    config_get(argv[0], strlen(argv[0]), &r);
    if (r.is_err) {
        return failed("get", &r.val.err, false);
    }
    if (r.val.ok.is_some) {
        printf("%s=%.*s\n", argv[0], (int)r.val.ok.value.len, r.val.ok.value.ptr);
    } else {
        printf("%s: not set\n", argv[0]);
    }
    return 0;
}

static int config_all(int argc, char **argv) {
    (void)argv;
    if (argc != 0) {
        return EXIT_USAGE;
    }
    struct pairs_result r;
    config_get_all(&r);
    if (r.is_err) {
        return failed("get-all", &r.val.err, false);
    }
    for (size_t i = 0; i < r.val.ok.len; i++) {
        struct pair *p = &r.val.ok.ptr[i];
        printf("%.*s=%.*s\n", (int)p->key.len, p->key.ptr, (int)p->value.len, p->value.ptr);
    }
    return 0;
}

/* Opens BUCKET into *bucket; prints the error and returns 1 on failure. */
static int open_bucket(const char *name, int32_t *bucket) {
    struct handle_result r;
    kv_open(name, strlen(name), &r);
    if (r.is_err) {
        return failed("open", &r.val.err, true);
    }
    *bucket = r.val.ok;
    return 0;
}

static int get(int argc, char **argv) {
    if (argc != 2) {
        return EXIT_USAGE;
    }
    int32_t bucket;
    if (open_bucket(argv[0], &bucket)) {
        return 1;
    }
    struct option_result r;
    kv_get(bucket, argv[1], strlen(argv[1]), &r);
    kv_drop(bucket);
    if (r.is_err) {
        return failed("get", &r.val.err, true);
    }
    if (r.val.ok.is_some) {
        printf("%s=%.*s\n", argv[1], (int)r.val.ok.value.len, r.val.ok.value.ptr);
    } else {
        printf("%s: not set\n", argv[1]);
    }
    return 0;
}

static int set(int argc, char **argv) {
    if (argc != 3) {
        return EXIT_USAGE;
    }
    int32_t bucket;
    if (open_bucket(argv[0], &bucket)) {
        return 1;
    }
    struct handle_result r;
    kv_set(bucket, argv[1], strlen(argv[1]), argv[2], strlen(argv[2]), &r);
    kv_drop(bucket);
    if (r.is_err) {
        return failed("set", &r.val.err, true);
    }
    printf("%s set\n", argv[1]);
    return 0;
}

static int del(int argc, char **argv) {
    if (argc != 2) {
        return EXIT_USAGE;
    }
    int32_t bucket;
    if (open_bucket(argv[0], &bucket)) {
        return 1;
    }
    struct handle_result r;
    kv_delete(bucket, argv[1], strlen(argv[1]), &r);
    kv_drop(bucket);
    if (r.is_err) {
        return failed("delete", &r.val.err, true);
    }
    printf("%s deleted\n", argv[1]);
    return 0;
}

static int incr(int argc, char **argv) {
    if (argc != 2) {
        return EXIT_USAGE;
    }
    int32_t bucket;
    if (open_bucket(argv[0], &bucket)) {
        return 1;
    }
    struct u64_result r;
    kv_increment(bucket, argv[1], strlen(argv[1]), 1, &r);
    kv_drop(bucket);
    if (r.is_err) {
        return failed("increment", &r.val.err, true);
    }
    printf("%s=%llu\n", argv[1], (unsigned long long)r.val.ok);
    return 0;
}

/* Every key of BUCKET, a page at a time. */
static int keys(int argc, char **argv) {
    if (argc != 1) {
        return EXIT_USAGE;
    }
    int32_t bucket;
    if (open_bucket(argv[0], &bucket)) {
        return 1;
    }
    uint8_t has_cursor = 0;
    uint64_t cursor = 0;
    do {
        struct keys_result r;
        kv_list_keys(bucket, has_cursor, cursor, &r);
        if (r.is_err) {
            return failed("list-keys", &r.val.err, true);
        }
        for (size_t i = 0; i < r.val.ok.len; i++) {
            printf("%.*s\n", (int)r.val.ok.keys[i].len, r.val.ok.keys[i].ptr);
        }
        has_cursor = r.val.ok.has_cursor;
        cursor = r.val.ok.cursor;
    } while (has_cursor);
    kv_drop(bucket);
    return 0;
}

static struct bytes text(char *s) {
    return (struct bytes){s, strlen(s)};
}

/* setmany BUCKET KEY=VALUE...: one batch. */
static int set_many(int argc, char **argv) {
    if (argc < 2) {
        return EXIT_USAGE;
    }
    int32_t bucket;
    if (open_bucket(argv[0], &bucket)) {
        return 1;
    }
    size_t n = (size_t)argc - 1;
    struct entry *entries = calloc(n, sizeof *entries);
    for (size_t i = 0; i < n; i++) {
        char *kv = argv[i + 1];
        char *eq = strchr(kv, '=');
        if (eq == NULL) {
            return EXIT_USAGE;
        }
        *eq = '\0';
        entries[i].key = text(kv);
        entries[i].value = text(eq + 1);
    }
    struct handle_result r;
    kv_set_many(bucket, entries, n, &r);
    kv_drop(bucket);
    if (r.is_err) {
        return failed("set-many", &r.val.err, true);
    }
    printf("%zu set\n", n);
    return 0;
}

/* getmany BUCKET KEY...: one batch; KEY=VALUE or `KEY: not set` each. */
static int get_many(int argc, char **argv) {
    if (argc < 2) {
        return EXIT_USAGE;
    }
    int32_t bucket;
    if (open_bucket(argv[0], &bucket)) {
        return 1;
    }
    size_t n = (size_t)argc - 1;
    struct bytes *names = calloc(n, sizeof *names);
    for (size_t i = 0; i < n; i++) {
        names[i] = text(argv[i + 1]);
    }
    struct entries_result r;
    kv_get_many(bucket, names, n, &r);
    kv_drop(bucket);
    if (r.is_err) {
        return failed("get-many", &r.val.err, true);
    }
    for (size_t i = 0; i < r.val.ok.len; i++) {
        struct maybe_entry *e = &r.val.ok.ptr[i];
        if (e->is_some) {
            printf("%.*s=%.*s\n", (int)e->entry.key.len, e->entry.key.ptr,
                   (int)e->entry.value.len, e->entry.value.ptr);
        } else {
            printf("%s: not set\n", argv[i + 1]);
        }
    }
    return 0;
}

/* delmany BUCKET KEY...: one batch. */
static int delete_many(int argc, char **argv) {
    if (argc < 2) {
        return EXIT_USAGE;
    }
    int32_t bucket;
    if (open_bucket(argv[0], &bucket)) {
        return 1;
    }
    size_t n = (size_t)argc - 1;
    struct bytes *names = calloc(n, sizeof *names);
    for (size_t i = 0; i < n; i++) {
        names[i] = text(argv[i + 1]);
    }
    struct handle_result r;
    kv_delete_many(bucket, names, n, &r);
    kv_drop(bucket);
    if (r.is_err) {
        return failed("delete-many", &r.val.err, true);
    }
    printf("%zu deleted\n", n);
    return 0;
}

/* count BUCKET KEY MS N: N increments, MS milliseconds apart, each printed (a long-lived client
 * of the agent's socket, e.g. across an agent restart). A failed call is printed and retried. */
static int count(int argc, char **argv) {
    if (argc != 4) {
        return EXIT_USAGE;
    }
    long ms = atol(argv[2]), n = atol(argv[3]);
    int32_t bucket;
    if (open_bucket(argv[0], &bucket)) {
        return 1;
    }
    for (long i = 0; i < n; i++) {
        struct u64_result r;
        kv_increment(bucket, argv[1], strlen(argv[1]), 1, &r);
        if (r.is_err) {
            failed("increment", &r.val.err, true);
        } else {
            printf("%s=%llu\n", argv[1], (unsigned long long)r.val.ok);
        }
        fflush(stdout);
        struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&pause, NULL);
    }
    kv_drop(bucket);
    return 0;
}

static int log_cmd(int argc, char **argv) {
    static const char *const levels[] = {"trace", "debug", "info", "warn", "error", "critical"};
    if (argc != 3) {
        return EXIT_USAGE;
    }
    for (int32_t level = 0; level < 6; level++) {
        if (strcmp(argv[0], levels[level]) == 0) {
            log_record(level, argv[1], strlen(argv[1]), argv[2], strlen(argv[2]));
            return 0;
        }
    }
    fprintf(stderr, "host log: unknown level '%s'\n", argv[0]);
    return EXIT_USAGE;
}

struct command {
    const char *name;
    const char *operands;
    int (*run)(int argc, char **argv);
};

static const struct command commands[] = {
    {"config", "KEY", config},
    {"config-all", "", config_all},
    {"get", "BUCKET KEY", get},
    {"set", "BUCKET KEY VALUE", set},
    {"del", "BUCKET KEY", del},
    {"incr", "BUCKET KEY", incr},
    {"count", "BUCKET KEY MS N", count},
    {"keys", "BUCKET", keys},
    {"setmany", "BUCKET KEY=VALUE...", set_many},
    {"getmany", "BUCKET KEY...", get_many},
    {"delmany", "BUCKET KEY...", delete_many},
    {"log", "LEVEL CONTEXT MESSAGE", log_cmd},
};

static int usage(void) {
    fprintf(stderr, "usage:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        fprintf(stderr, "  host %s %s\n", commands[i].name, commands[i].operands);
    }
    return EXIT_USAGE;
}

static int run_command(int argc, char **argv) {
    if (argc < 2) {
        return usage();
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            command = commands[i].name;
            int code = commands[i].run(argc - 2, argv + 2);
            return code == EXIT_USAGE ? usage() : code;
        }
    }
    fprintf(stderr, "host: unknown command '%s'\n", argv[1]);
    return usage();
}

/* As in net.c: calling the constructors ourselves keeps wasm-ld from wrapping cabi_realloc in
 * them (a destructor's stdio flush would call the host while it lowers a result). */
extern void __wasm_call_ctors(void);

int main(int argc, char **argv) {
    __wasm_call_ctors();
    int code = run_command(argc, argv);
    fflush(stdout);
    exit(code);
}
