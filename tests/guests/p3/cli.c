/*
 * cli: skiff's WASI 0.3 command guest (a wasi:cli@0.3.0 command component, freestanding C).
 *
 * argv[1] picks a command, like probe.c: `echo WORDS...` prints them, `env NAMES...` prints
 * NAME=VALUE or `NAME unset` for each, `ls` prints the preopened directories' guest paths, `cat
 * DIR FILE` prints FILE of the preopen DIR, `lookup NAMES...` prints `NAME ADDRESS...` (or `NAME
 * error: CODE`) for each name through wasi:sockets/ip-name-lookup (exit 1 if one failed), `sleep
 * MS` waits on the monotonic clock then prints `slept`, `spin` loops forever (for kills), `exit N` prints `exiting N` on stderr and exits with N (wasi:cli/exit.exit-with-code),
 * `fail` returns err from run (exit code 1), `crash` traps. Bad usage exits 2.
 *
 * It imports only WASI 0.3.0 (deps/, as wasmtime 48 ships it) by canonical ABI names, declared
 * by the world `cli` of guests.wit. `run` is lifted synchronously: it is an `async func`, so it
 * may block (waitable-set.wait, and sync calls of async imports such as open-at and wait-for).
 * Standard output and error are streams handed to wasi:cli/stdout.write-via-stream; each write
 * is an async stream write, waited for when it blocks. tests/src/guests.rs builds it with
 *
 *     clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -o cli.wasm cli.c
 *
 * then embeds the world and encodes the component with wit-component (no adapter).
 */

#include "abi.h"

#define EXIT_USAGE 2

struct str {
    const char *ptr;
    size_t len;
};

struct list {
    void *ptr;
    size_t len;
};

/* list<tuple<string, string>> element */
struct env_var {
    struct str name, value;
};

/* list<tuple<descriptor, string>> element */
struct preopen {
    handle dir;
    struct str path;
};

#define CLI "wasi:cli/environment@0.3.0"
#define STDOUT "wasi:cli/stdout@0.3.0"
#define STDERR "wasi:cli/stderr@0.3.0"
#define FS "wasi:filesystem/types@0.3.0"

IMPORT(CLI, "get-arguments") void get_arguments(struct list *ret);
IMPORT(CLI, "get-environment") void get_environment(struct list *ret);
IMPORT("wasi:cli/exit@0.3.0", "exit-with-code") void exit_with_code(uint32_t code);

IMPORT(STDOUT, "write-via-stream") handle stdout_write_via_stream(handle data);
IMPORT(STDOUT, "[stream-new-0]write-via-stream") uint64_t stdout_stream_new(void);
IMPORT(STDOUT, "[async-lower][stream-write-0]write-via-stream")
uint32_t stdout_stream_write(handle tx, const void *buf, size_t len);
IMPORT(STDOUT, "[stream-drop-writable-0]write-via-stream") void stdout_stream_drop(handle tx);
IMPORT(STDOUT, "[async-lower][future-read-1]write-via-stream")
uint32_t stdout_future_read(handle rx, void *result);
IMPORT(STDOUT, "[future-drop-readable-1]write-via-stream") void stdout_future_drop(handle rx);

IMPORT(STDERR, "write-via-stream") handle stderr_write_via_stream(handle data);
IMPORT(STDERR, "[stream-new-0]write-via-stream") uint64_t stderr_stream_new(void);
IMPORT(STDERR, "[async-lower][stream-write-0]write-via-stream")
uint32_t stderr_stream_write(handle tx, const void *buf, size_t len);
IMPORT(STDERR, "[stream-drop-writable-0]write-via-stream") void stderr_stream_drop(handle tx);
IMPORT(STDERR, "[async-lower][future-read-1]write-via-stream")
uint32_t stderr_future_read(handle rx, void *result);
IMPORT(STDERR, "[future-drop-readable-1]write-via-stream") void stderr_future_drop(handle rx);

IMPORT("wasi:filesystem/preopens@0.3.0", "get-directories") void get_directories(struct list *ret);
IMPORT(FS, "[method]descriptor.open-at")
void descriptor_open_at(handle self, uint32_t path_flags, const char *path, size_t path_len,
                        uint32_t open_flags, uint32_t flags, void *ret);
IMPORT(FS, "[method]descriptor.read-via-stream")
void descriptor_read_via_stream(handle self, uint64_t offset, handle *ret);
IMPORT(FS, "[async-lower][stream-read-0][method]descriptor.read-via-stream")
uint32_t file_stream_read(handle rx, void *buf, size_t len);
IMPORT(FS, "[stream-drop-readable-0][method]descriptor.read-via-stream")
void file_stream_drop(handle rx);
IMPORT(FS, "[future-drop-readable-1][method]descriptor.read-via-stream")
void file_future_drop(handle rx);
IMPORT(FS, "[resource-drop]descriptor") void descriptor_drop(handle self);

IMPORT("wasi:clocks/monotonic-clock@0.3.0", "wait-for") void monotonic_wait_for(uint64_t ns);

/* result<list<ip-address>, error-code>: a u8 tag, the payload at offset 4. */
struct lookup_result {
    uint8_t is_err;
    union {
        struct list addresses; /* ip-address: a u8 tag, the address at offset 2; 18 bytes */
        uint8_t code;          /* error-code's case */
    } val;
};

IMPORT("wasi:sockets/ip-name-lookup@0.3.0", "resolve-addresses")
void resolve_addresses(const char *name, size_t len, struct lookup_result *ret);

/* The one waitable set this task waits in. */
static handle set;

/* ---------------------------------------------------------------------------------------- */
/* stdout and stderr                                                                         */
/* ---------------------------------------------------------------------------------------- */

struct output {
    int is_stderr;
    int open;
    handle tx;     /* writable end of the stream the host reads */
    handle result; /* future<result<_, error-code>> of write-via-stream */
};

static struct output out = {.is_stderr = 0}, err = {.is_stderr = 1};

static void output_open(struct output *o) {
    uint64_t pair = o->is_stderr ? stderr_stream_new() : stdout_stream_new();
    o->result = o->is_stderr ? stderr_write_via_stream(readable_of(pair))
                             : stdout_write_via_stream(readable_of(pair));
    o->tx = writable_of(pair);
    waitable_join(o->tx, set);
    o->open = 1;
}

static void write_bytes(struct output *o, const char *buf, size_t len) {
    if (!o->open) output_open(o);
    while (len) {
        uint32_t r = o->is_stderr ? stderr_stream_write(o->tx, buf, len)
                                  : stdout_stream_write(o->tx, buf, len);
        if (r == BLOCKED) r = wait_for(set, o->tx);
        size_t n = r >> 4;
        buf += n;
        len -= n;
        if ((r & 0xf) != COPY_COMPLETED) return; /* the host stopped reading */
    }
}

static void print(struct output *o, const char *s) { write_bytes(o, s, str_len(s)); }

/* Ends the stream and waits for the host to report the write's result. */
static void output_close(struct output *o) {
    if (!o->open) return;
    o->is_stderr ? stderr_stream_drop(o->tx) : stdout_stream_drop(o->tx);
    uint8_t result[2];
    waitable_join(o->result, set);
    uint32_t r = o->is_stderr ? stderr_future_read(o->result, result)
                              : stdout_future_read(o->result, result);
    if (r == BLOCKED) wait_for(set, o->result);
    o->is_stderr ? stderr_future_drop(o->result) : stdout_future_drop(o->result);
    o->open = 0;
}

static void finish(void) {
    output_close(&out);
    output_close(&err);
}

static __attribute__((noreturn)) void exit_with(uint32_t code) {
    finish();
    exit_with_code(code);
    __builtin_trap(); /* exit-with-code does not return */
}

/* ---------------------------------------------------------------------------------------- */
/* Commands                                                                                  */
/* ---------------------------------------------------------------------------------------- */

static uint32_t usage(void) {
    print(&err, "usage: cli echo WORDS... | env NAMES... | ls | cat DIR FILE | lookup NAMES... | "
                "sleep MS | spin | exit N | fail | crash\n");
    exit_with(EXIT_USAGE);
}

static uint32_t cmd_echo(struct str *args, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (i) print(&out, " ");
        write_bytes(&out, args[i].ptr, args[i].len);
    }
    print(&out, "\n");
    return 0;
}

static uint32_t cmd_env(struct str *names, size_t n) {
    struct list env;
    get_environment(&env);
    struct env_var *vars = env.ptr;
    for (size_t i = 0; i < n; i++) {
        write_bytes(&out, names[i].ptr, names[i].len);
        size_t j = 0;
        while (j < env.len &&
               !mem_eq(vars[j].name.ptr, vars[j].name.len, names[i].ptr, names[i].len))
            j++;
        if (j < env.len) {
            print(&out, "=");
            write_bytes(&out, vars[j].value.ptr, vars[j].value.len);
            print(&out, "\n");
        } else {
            print(&out, " unset\n");
        }
    }
    return 0;
}

static uint32_t cmd_ls(void) {
    struct list dirs;
    get_directories(&dirs);
    struct preopen *p = dirs.ptr;
    for (size_t i = 0; i < dirs.len; i++) {
        write_bytes(&out, p[i].path.ptr, p[i].path.len);
        print(&out, "\n");
    }
    return 0;
}

static void fail_code(const char *what, uint32_t code) {
    char num[12];
    print(&err, what);
    print(&err, ": error code ");
    write_bytes(&err, num, fmt_u32(num, code));
    print(&err, "\n");
}

static uint32_t cmd_cat(struct str dir, struct str file) {
    struct list dirs;
    get_directories(&dirs);
    struct preopen *p = dirs.ptr;
    size_t i = 0;
    while (i < dirs.len && !mem_eq(p[i].path.ptr, p[i].path.len, dir.ptr, dir.len)) i++;
    if (i == dirs.len) {
        print(&err, "cat: no preopen named ");
        write_bytes(&err, dir.ptr, dir.len);
        print(&err, "\n");
        return 1;
    }
    /* result<descriptor, error-code>: a u8 tag, the payload at offset 4. */
    struct {
        uint8_t is_err;
        uint32_t val;
    } opened;
    descriptor_open_at(p[i].dir, 0, file.ptr, file.len, 0, 1 /* read */, &opened);
    if (opened.is_err) {
        fail_code("cat: open-at", opened.val & 0xff);
        return 1;
    }
    handle streams[2]; /* stream<u8>, future<result<_, error-code>> */
    descriptor_read_via_stream(opened.val, 0, streams);
    waitable_join(streams[0], set);
    static char buf[4096];
    for (;;) {
        uint32_t r = file_stream_read(streams[0], buf, sizeof buf);
        if (r == BLOCKED) r = wait_for(set, streams[0]);
        write_bytes(&out, buf, r >> 4);
        if ((r & 0xf) != COPY_COMPLETED) break; /* the end of the file */
    }
    waitable_join(streams[0], 0);
    file_stream_drop(streams[0]);
    file_future_drop(streams[1]);
    descriptor_drop(opened.val);
    return 0;
}

static const char *const lookup_errors[] = {
    "access-denied",          "invalid-argument",           "name-unresolvable",
    "temporary-resolver-failure", "permanent-resolver-failure", "other",
};

static void print_u32(struct output *o, uint32_t n) {
    char num[12];
    write_bytes(o, num, fmt_u32(num, n));
}

static void print_hex(struct output *o, uint32_t n) {
    char digits[8];
    size_t len = 0;
    do {
        digits[len++] = "0123456789abcdef"[n & 0xf];
        n >>= 4;
    } while (n);
    char text[8];
    for (size_t i = 0; i < len; i++) text[i] = digits[len - 1 - i];
    write_bytes(o, text, len);
}

static uint32_t cmd_lookup(struct str *names, size_t n) {
    uint32_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        struct lookup_result r;
        resolve_addresses(names[i].ptr, names[i].len, &r);
        write_bytes(&out, names[i].ptr, names[i].len);
        if (r.is_err) {
            print(&out, " error: ");
            print(&out, r.val.code < 6 ? lookup_errors[r.val.code] : "?");
            print(&out, "\n");
            failed = 1;
            continue;
        }
        const uint8_t *a = r.val.addresses.ptr;
        for (size_t j = 0; j < r.val.addresses.len; j++, a += 18) {
            print(&out, " ");
            if (a[0] == 0) { /* ipv4: four u8 */
                for (int k = 0; k < 4; k++) {
                    if (k) print(&out, ".");
                    print_u32(&out, a[2 + k]);
                }
            } else { /* ipv6: eight u16, in hex groups (uncompressed) */
                for (int k = 0; k < 8; k++) {
                    if (k) print(&out, ":");
                    print_hex(&out, (uint32_t)a[2 + 2 * k] | (uint32_t)a[3 + 2 * k] << 8);
                }
            }
        }
        print(&out, "\n");
    }
    return failed;
}

static uint32_t cmd_sleep(struct str ms) {
    uint32_t n;
    if (!parse_u32(ms.ptr, ms.len, &n)) usage();
    monotonic_wait_for((uint64_t)n * 1000000);
    print(&out, "slept\n");
    return 0;
}

static uint32_t cmd_exit(struct str code) {
    uint32_t n;
    if (!parse_u32(code.ptr, code.len, &n) || n > 255) usage();
    print(&err, "exiting ");
    write_bytes(&err, code.ptr, code.len);
    print(&err, "\n");
    exit_with(n);
}

static uint32_t dispatch(struct str *argv, size_t argc) {
    if (argc < 2) usage();
    struct str cmd = argv[1];
    struct str *rest = argv + 2;
    size_t n = argc - 2;
    if (bytes_eq(cmd.ptr, cmd.len, "echo")) return cmd_echo(rest, n);
    if (bytes_eq(cmd.ptr, cmd.len, "env")) return cmd_env(rest, n);
    if (bytes_eq(cmd.ptr, cmd.len, "ls") && n == 0) return cmd_ls();
    if (bytes_eq(cmd.ptr, cmd.len, "cat") && n == 2) return cmd_cat(rest[0], rest[1]);
    if (bytes_eq(cmd.ptr, cmd.len, "lookup")) return cmd_lookup(rest, n);
    if (bytes_eq(cmd.ptr, cmd.len, "sleep") && n == 1) return cmd_sleep(rest[0]);
    if (bytes_eq(cmd.ptr, cmd.len, "exit") && n == 1) return cmd_exit(rest[0]);
    if (bytes_eq(cmd.ptr, cmd.len, "fail") && n == 0) {
        print(&err, "failing\n");
        return 1;
    }
    if (bytes_eq(cmd.ptr, cmd.len, "spin") && n == 0) {
        volatile uint32_t turns = 0;
        for (;;) turns++;
    }
    if (bytes_eq(cmd.ptr, cmd.len, "crash") && n == 0) {
        print(&err, "crashing\n");
        __builtin_trap();
    }
    return usage();
}

/* wasi:cli/run.run: async func() -> result, lifted sync: 0 is ok, 1 is err. */
EXPORT("wasi:cli/run@0.3.0#run")
uint32_t run(void) {
    set = waitable_set_new();
    struct list args;
    get_arguments(&args);
    uint32_t result = dispatch(args.ptr, args.len);
    finish();
    return result;
}
