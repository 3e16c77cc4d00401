/*
 * abi.h: the parts of the component model's async canonical ABI the WASI 0.3 test guests share
 * (no libc: they are freestanding wasm32 modules, so nothing in them imports WASI preview 1).
 *
 * Constants are the spec's (Concurrency.md, CanonicalABI.md) as wasmtime 48 implements them:
 * a stream or future read/write returns BLOCKED or (count << 4 | status); waitable-set.wait
 * returns an event code and stores (waitable, payload) at its pointer; a callback-lifted export
 * returns EXIT, or WAIT | (set << 4). stream.new / future.new return (writable << 32 | readable).
 * Only the async forms of stream/future read and write exist without wasmtime's "more async
 * builtins" feature, so a blocking write is an async write plus a wait.
 */

#ifndef SKIFF_P3_ABI_H
#define SKIFF_P3_ABI_H

#include <stddef.h>
#include <stdint.h>

#define IMPORT(module, name) __attribute__((import_module(module), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

#define BLOCKED 0xffffffffu

enum event {
    EVENT_NONE = 0,
    EVENT_SUBTASK = 1,
    EVENT_STREAM_READ = 2,
    EVENT_STREAM_WRITE = 3,
    EVENT_FUTURE_READ = 4,
    EVENT_FUTURE_WRITE = 5,
    EVENT_CANCELLED = 6,
};

enum copy_status { COPY_COMPLETED = 0, COPY_DROPPED = 1, COPY_CANCELLED = 2 };
enum callback_code { CALLBACK_EXIT = 0, CALLBACK_YIELD = 1, CALLBACK_WAIT = 2 };
enum subtask_state { SUBTASK_STARTING = 0, SUBTASK_STARTED = 1, SUBTASK_RETURNED = 2 };

typedef uint32_t handle;

IMPORT("$root", "[waitable-set-new]") handle waitable_set_new(void);
IMPORT("$root", "[waitable-set-wait]") uint32_t waitable_set_wait(handle set, uint32_t *event);
IMPORT("$root", "[waitable-set-drop]") void waitable_set_drop(handle set);
IMPORT("$root", "[waitable-join]") void waitable_join(handle waitable, handle set);
IMPORT("$root", "[subtask-drop]") void subtask_drop(handle subtask);

static inline handle readable_of(uint64_t pair) { return (handle)pair; }
static inline handle writable_of(uint64_t pair) { return (handle)(pair >> 32); }

/* ---------------------------------------------------------------------------------------- */
/* Memory: what clang may call, and cabi_realloc for what the host hands over               */
/* ---------------------------------------------------------------------------------------- */

void *memcpy(void *dst, const void *src, size_t n) {
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--) *d++ = *s++;
    return dst;
}

void *memset(void *dst, int c, size_t n) {
    unsigned char *d = dst;
    while (n--) *d++ = (unsigned char)c;
    return dst;
}

static size_t str_len(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return n;
}

static int mem_eq(const char *a, size_t alen, const char *b, size_t blen) {
    if (alen != blen) return 0;
    for (size_t i = 0; i < alen; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static int bytes_eq(const char *a, size_t alen, const char *b) {
    return mem_eq(a, alen, b, str_len(b));
}

extern unsigned char __heap_base;
static uintptr_t heap_next;

/* A bump allocator: the guests are short-lived; nothing is freed. */
EXPORT("cabi_realloc")
void *cabi_realloc(void *old, size_t old_len, size_t align, size_t new_len) {
    if (!heap_next) heap_next = (uintptr_t)&__heap_base;
    uintptr_t p = (heap_next + align - 1) & ~(uintptr_t)(align - 1);
    uintptr_t end = p + new_len;
    size_t have = __builtin_wasm_memory_size(0) * 65536;
    if (end > have) {
        size_t pages = (end - have + 65535) / 65536;
        if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) __builtin_trap();
    }
    heap_next = end;
    if (old && old_len) memcpy((void *)p, old, old_len < new_len ? old_len : new_len);
    return (void *)p;
}

static __attribute__((unused)) void *alloc(size_t len) { return cabi_realloc(0, 0, 8, len); }

/* Decimal text of n into buf (at least 12 bytes); returns its length. */
static __attribute__((unused)) size_t fmt_u32(char *buf, uint32_t n) {
    char tmp[12];
    size_t len = 0;
    do {
        tmp[len++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    for (size_t i = 0; i < len; i++) buf[i] = tmp[len - 1 - i];
    return len;
}

static int parse_u32(const char *s, size_t len, uint32_t *out) {
    uint32_t n = 0;
    if (!len) return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        n = n * 10 + (uint32_t)(s[i] - '0');
    }
    *out = n;
    return 1;
}

/* ---------------------------------------------------------------------------------------- */
/* Waiting (for a task that may block: an async-typed export, lifted sync or stackful)       */
/* ---------------------------------------------------------------------------------------- */

/* Waits in `set` for the event of `waitable`; returns its payload. */
static __attribute__((unused)) uint32_t wait_for(handle set, handle waitable) {
    uint32_t ev[2];
    for (;;) {
        uint32_t code = waitable_set_wait(set, ev);
        if (code != EVENT_NONE && ev[0] == waitable) return ev[1];
    }
}

#endif
