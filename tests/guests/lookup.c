/*
 * lookup: skiff's name-lookup test guest (WASI preview 2 component, C, wasi-libc,
 * wasi:sockets/ip-name-lookup).
 *
 * `lookup NAME...` resolves each NAME through `wasi:sockets/ip-name-lookup` and prints one line
 * per name: `NAME ADDRESS ADDRESS...`, or `NAME error: CODE` (the error-code's WIT name). It
 * exits 0 when every name resolved, 1 otherwise, 2 on bad usage.
 *
 * As net.c, it imports the wasi:sockets and wasi:io functions it calls by their canonical ABI
 * names; lookup.wit declares them for wit-component (guests::socket_component("lookup")).
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef int32_t handle;

/* result<own<resolve-address-stream>, error-code>: the handle (alignment 4) at offset 4. */
struct handle_result {
    uint8_t is_err;
    union {
        handle ok;
        uint8_t code;
    } val;
};

/*
 * result<option<ip-address>, error-code>, ip-address = variant { ipv4(tuple<u8 x4>),
 * ipv6(tuple<u16 x8>) }: every payload is at alignment 2, so the option is at 2, the address
 * variant's tag at 4 and its octets or segments at 6.
 */
struct next_result {
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

_Static_assert(offsetof(struct handle_result, val) == 4, "result<own, error-code>");
_Static_assert(offsetof(struct next_result, val) == 2, "result<option<ip-address>, error-code>");
_Static_assert(offsetof(struct next_result, val.ok.addr) == 6, "ip-address payload");
_Static_assert(sizeof(struct next_result) == 22, "result<option<ip-address>, error-code> size");

/* error-code of wasi:sockets/network, in WIT order. */
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
#define WOULD_BLOCK 8

#define IMPORT(module, name) __attribute__((import_module(module), import_name(name)))
#define INSTANCE_NETWORK "wasi:sockets/instance-network@0.2.0"
#define IP_NAME_LOOKUP "wasi:sockets/ip-name-lookup@0.2.0"
#define IO_POLL "wasi:io/poll@0.2.0"

IMPORT(INSTANCE_NETWORK, "instance-network")
extern handle instance_network(void);

IMPORT(IP_NAME_LOOKUP, "resolve-addresses")
extern void resolve_addresses(handle network, const char *name, size_t len,
                              struct handle_result *ret);

IMPORT(IP_NAME_LOOKUP, "[method]resolve-address-stream.resolve-next-address")
extern void resolve_next_address(handle stream, struct next_result *ret);

IMPORT(IP_NAME_LOOKUP, "[method]resolve-address-stream.subscribe")
extern handle stream_subscribe(handle stream);

IMPORT(IP_NAME_LOOKUP, "[resource-drop]resolve-address-stream")
extern void drop_stream(handle stream);

IMPORT(IO_POLL, "[method]pollable.block")
extern void pollable_block(handle pollable);

IMPORT(IO_POLL, "[resource-drop]pollable")
extern void drop_pollable(handle pollable);

static const char *error_name(uint8_t code) {
    return code < sizeof error_names / sizeof error_names[0] ? error_names[code] : "?";
}

/* Prints NAME's addresses (or its error); 0 when it resolved. */
static int lookup(handle network, const char *name) {
    struct handle_result started;
    resolve_addresses(network, name, strlen(name), &started);
    if (started.is_err) {
        printf("%s error: %s\n", name, error_name(started.val.code));
        return 1;
    }
    handle stream = started.val.ok;
    int found = 0;
    printf("%s", name);
    for (;;) {
        struct next_result next;
        resolve_next_address(stream, &next);
        if (next.is_err && next.val.code == WOULD_BLOCK) {
            handle ready = stream_subscribe(stream);
            pollable_block(ready);
            drop_pollable(ready);
            continue;
        }
        if (next.is_err) {
            printf(" error: %s", error_name(next.val.code));
            break;
        }
        if (!next.val.ok.is_some) {
            break;
        }
        found++;
        if (next.val.ok.tag == 0) {
            const uint8_t *a = next.val.ok.addr.v4;
            printf(" %u.%u.%u.%u", a[0], a[1], a[2], a[3]);
        } else {
            const uint16_t *s = next.val.ok.addr.v6;
            printf(" %x:%x:%x:%x:%x:%x:%x:%x", s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
        }
    }
    printf("\n");
    drop_stream(stream);
    return found > 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: lookup NAME...\n");
        return 2;
    }
    handle network = instance_network();
    int failed = 0;
    for (int i = 1; i < argc; i++) {
        failed |= lookup(network, argv[i]);
    }
    fflush(stdout);
    return failed;
}
