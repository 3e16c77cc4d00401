/*
 * http: skiff's WASI 0.3 function guest (a wasi:http@0.3.0 handler component, freestanding C).
 *
 * It answers by the request's path:
 *
 *   /sleep/MS   waits MS milliseconds on the monotonic clock, then `slept MS ms, request K of
 *               its instance` (K counts the requests this instance has taken: above 1, the
 *               host ran several requests in one instance)
 *   /alone/MS   as /sleep/MS, but with backpressure on while it runs: the instance refuses
 *               concurrent calls (backpressure.inc), so overlapping requests get instances
 *               of their own
 *   /env/NAME   the value of NAME in its environment (or `NAME unset`)
 *   /trap       traps
 *   /spin       loops forever (for timeouts)
 *   anything    `hello from a WASI 0.3 function`
 *
 * and writes `handled PATH` to stdout once the response body is out.
 *
 * `handle` is lifted async with a callback, so one instance may run several requests at once:
 * each request is a task with its own state (in the task's context slot 0) and waitable set; the
 * entry point and the callback advance it through its stages, returning WAIT whenever an
 * operation blocks (the clock, a body or log write the host has not taken yet, the trailers).
 * The response is handed over with task.return before its body is written: the host reads the
 * body stream only once it has the response. Built like cli.c (tests/src/guests.rs,
 * guests::p3_component("http")), world `http` of guests.wit.
 */

#include "abi.h"

#define TYPES "wasi:http/types@0.3.0"
#define STDOUT "wasi:cli/stdout@0.3.0"

IMPORT("$root", "[context-get-0]") void *context_get(void);
IMPORT("$root", "[context-set-0]") void context_set(void *value);
IMPORT("$root", "[backpressure-inc]") void backpressure_inc(void);
IMPORT("$root", "[backpressure-dec]") void backpressure_dec(void);

IMPORT("[export]wasi:http/handler@0.3.0", "[task-return]handle")
void task_return_handle(uint32_t is_err, uint32_t response, uint32_t e0, uint64_t e1, uint32_t e2,
                        uint32_t e3, uint32_t e4, uint32_t e5);

IMPORT(TYPES, "[method]request.get-path-with-query") void request_path(handle req, void *ret);
IMPORT(TYPES, "[resource-drop]request") void request_drop(handle req);
IMPORT(TYPES, "[constructor]fields") handle fields_new(void);
IMPORT(TYPES, "[method]fields.set")
void fields_set(handle self, const char *name, size_t name_len, const void *values, size_t n,
                void *ret);
IMPORT(TYPES, "[static]response.new")
void response_new(handle headers, uint32_t has_contents, handle contents, handle trailers,
                  handle *ret);
IMPORT(TYPES, "[stream-new-0][static]response.new") uint64_t body_stream_new(void);
IMPORT(TYPES, "[async-lower][stream-write-0][static]response.new")
uint32_t body_stream_write(handle tx, const void *buf, size_t len);
IMPORT(TYPES, "[stream-drop-writable-0][static]response.new") void body_stream_drop(handle tx);
IMPORT(TYPES, "[future-new-1][static]response.new") uint64_t trailers_future_new(void);
IMPORT(TYPES, "[async-lower][future-write-1][static]response.new")
uint32_t trailers_future_write(handle tx, const void *value);
IMPORT(TYPES, "[future-drop-writable-1][static]response.new") void trailers_future_drop(handle tx);
IMPORT(TYPES, "[future-drop-readable-2][static]response.new") void sent_future_drop(handle rx);

IMPORT("wasi:cli/environment@0.3.0", "get-environment") void get_environment(void *ret);
IMPORT("wasi:clocks/monotonic-clock@0.3.0", "[async-lower]wait-for") uint32_t wait_for_ns(uint64_t ns);

IMPORT(STDOUT, "write-via-stream") handle stdout_write_via_stream(handle data);
IMPORT(STDOUT, "[stream-new-0]write-via-stream") uint64_t stdout_stream_new(void);
IMPORT(STDOUT, "[async-lower][stream-write-0]write-via-stream")
uint32_t stdout_stream_write(handle tx, const void *buf, size_t len);
IMPORT(STDOUT, "[stream-drop-writable-0]write-via-stream") void stdout_stream_drop(handle tx);
IMPORT(STDOUT, "[future-drop-readable-1]write-via-stream") void stdout_future_drop(handle rx);

struct str {
    const char *ptr;
    size_t len;
};

enum stage { SLEEPING, WRITING_BODY, WRITING_TRAILERS, WRITING_LOG };

/* One request: the state of its task, between the entry point and callbacks. */
struct task {
    enum stage stage;
    handle set;
    handle waiting; /* the waitable the task waits for */
    handle body_tx, trailers_tx, log_tx;
    const char *out; /* what is being written (body or log), and how much is left */
    size_t out_len;
    char text[256];  /* the body */
    char line[300];  /* the log line */
    size_t line_len;
    int backpressure; /* this task turned backpressure on */
    struct task *next_free;
};

static struct task *free_tasks;
static uint32_t requests_seen;

static struct task *task_new(void) {
    struct task *t = free_tasks;
    if (t)
        free_tasks = t->next_free;
    else
        t = cabi_realloc(0, 0, 8, sizeof *t);
    memset(t, 0, sizeof *t);
    t->set = waitable_set_new();
    return t;
}

static uint32_t task_exit(struct task *t) {
    if (t->backpressure) backpressure_dec();
    waitable_set_drop(t->set);
    t->next_free = free_tasks;
    free_tasks = t;
    context_set(0);
    return CALLBACK_EXIT;
}

/* Waits for `waitable` in the task's set: the callback resumes at `stage`. */
static uint32_t wait_on(struct task *t, enum stage stage, handle waitable) {
    t->stage = stage;
    t->waiting = waitable;
    waitable_join(waitable, t->set);
    return CALLBACK_WAIT | (t->set << 4);
}

static size_t append(char *buf, size_t at, size_t cap, const char *s, size_t len) {
    for (size_t i = 0; i < len && at < cap; i++) buf[at++] = s[i];
    return at;
}

/* Appends a string literal. */
#define APPEND_LIT(buf, at, lit) append(buf, at, sizeof buf, lit, sizeof lit - 1)

static uint32_t respond(struct task *t);
static uint32_t write_body(struct task *t);
static uint32_t write_trailers(struct task *t);
static uint32_t write_log(struct task *t);

/* The body for `path`; may start a clock wait instead (then returns its WAIT code, else 0). */
static uint32_t route(struct task *t, struct str path) {
    size_t n = 0;
    const char *p = path.ptr;
    size_t prefix = path.len > 7 && mem_eq(p, 7, "/sleep/", 7)   ? 7
                    : path.len > 7 && mem_eq(p, 7, "/alone/", 7) ? 7
                                                                 : 0;
    if (prefix) {
        uint32_t ms;
        if (!parse_u32(p + prefix, path.len - prefix, &ms)) ms = 0;
        if (p[1] == 'a') {
            backpressure_inc();
            t->backpressure = 1;
        }
        n = APPEND_LIT(t->text, 0, "slept ");
        n = append(t->text, n, sizeof t->text, p + prefix, path.len - prefix);
        n = APPEND_LIT(t->text, n, " ms, request ");
        char num[12];
        n = append(t->text, n, sizeof t->text, num, fmt_u32(num, requests_seen));
        n = APPEND_LIT(t->text, n, " of its instance\n");
        t->out_len = n;
        uint32_t status = wait_for_ns((uint64_t)ms * 1000000);
        if ((status & 0xf) != SUBTASK_RETURNED) return wait_on(t, SLEEPING, status >> 4);
        return 0;
    }
    if (path.len > 5 && mem_eq(p, 5, "/env/", 5)) {
        struct str name = {p + 5, path.len - 5};
        struct {
            struct {
                struct str name, value;
            } *vars;
            size_t len;
        } env;
        get_environment(&env);
        size_t i = 0;
        while (i < env.len && !mem_eq(env.vars[i].name.ptr, env.vars[i].name.len, name.ptr, name.len))
            i++;
        n = append(t->text, 0, sizeof t->text, name.ptr, name.len);
        if (i < env.len) {
            n = APPEND_LIT(t->text, n, "=");
            n = append(t->text, n, sizeof t->text, env.vars[i].value.ptr, env.vars[i].value.len);
            n = APPEND_LIT(t->text, n, "\n");
        } else {
            n = APPEND_LIT(t->text, n, " unset\n");
        }
        t->out_len = n;
        return 0;
    }
    if (bytes_eq(p, path.len, "/trap")) __builtin_trap();
    if (bytes_eq(p, path.len, "/spin")) {
        volatile uint32_t turns = 0;
        for (;;) turns++;
    }
    static const char hello[] = "hello from a WASI 0.3 function\n";
    t->out_len = append(t->text, 0, sizeof t->text, hello, sizeof hello - 1);
    return 0;
}

/* task.return of a 200 whose body is a stream this task then writes. */
static uint32_t respond(struct task *t) {
    handle headers = fields_new();
    static const char type_name[] = "content-type";
    static const char type_value[] = "text/plain; charset=utf-8";
    struct str values[1] = {{type_value, sizeof type_value - 1}};
    uint32_t set_result[8]; /* result<_, header-error> */
    fields_set(headers, type_name, sizeof type_name - 1, values, 1, set_result);

    uint64_t body = body_stream_new();
    uint64_t trailers = trailers_future_new();
    t->body_tx = writable_of(body);
    t->trailers_tx = writable_of(trailers);
    handle created[2]; /* response, future<result<_, error-code>> of its transmission */
    response_new(headers, 1, readable_of(body), readable_of(trailers), created);
    sent_future_drop(created[1]);
    task_return_handle(0, created[0], 0, 0, 0, 0, 0, 0);
    t->out = t->text;
    return write_body(t);
}

static uint32_t write_body(struct task *t) {
    while (t->out_len) {
        uint32_t r = body_stream_write(t->body_tx, t->out, t->out_len);
        if (r == BLOCKED) return wait_on(t, WRITING_BODY, t->body_tx);
        t->out += r >> 4;
        t->out_len -= r >> 4;
        if ((r & 0xf) != COPY_COMPLETED) break; /* the client went away */
    }
    waitable_join(t->body_tx, 0);
    body_stream_drop(t->body_tx);
    return write_trailers(t);
}

/* result<option<trailers>, error-code>: aligned to 8 (error-code carries a u64); all zero is
 * ok(none). */
static const uint64_t no_trailers[5];

static uint32_t write_trailers(struct task *t) {
    uint32_t r = trailers_future_write(t->trailers_tx, no_trailers);
    if (r == BLOCKED) return wait_on(t, WRITING_TRAILERS, t->trailers_tx);
    return write_log(t);
}

static uint32_t write_log(struct task *t) {
    if (t->stage != WRITING_LOG) {
        waitable_join(t->trailers_tx, 0);
        trailers_future_drop(t->trailers_tx);
        uint64_t pair = stdout_stream_new();
        stdout_future_drop(stdout_write_via_stream(readable_of(pair)));
        t->log_tx = writable_of(pair);
        t->stage = WRITING_LOG;
        t->out = t->line;
        t->out_len = t->line_len;
    }
    while (t->out_len) {
        uint32_t r = stdout_stream_write(t->log_tx, t->out, t->out_len);
        if (r == BLOCKED) return wait_on(t, WRITING_LOG, t->log_tx);
        t->out += r >> 4;
        t->out_len -= r >> 4;
        if ((r & 0xf) != COPY_COMPLETED) break;
    }
    waitable_join(t->log_tx, 0);
    stdout_stream_drop(t->log_tx);
    return task_exit(t);
}

/* wasi:http/handler.handle: async func(request) -> result<response, error-code>. */
EXPORT("[async-lift]wasi:http/handler@0.3.0#handle")
uint32_t handle_request(handle request) {
    struct task *t = task_new();
    context_set(t);
    requests_seen++;
    struct {
        uint8_t is_some;
        struct str path;
    } path;
    request_path(request, &path);
    struct str p = path.is_some ? path.path : (struct str){"/", 1};
    t->line_len = APPEND_LIT(t->line, 0, "handled ");
    t->line_len = append(t->line, t->line_len, sizeof t->line, p.ptr, p.len);
    t->line_len = APPEND_LIT(t->line, t->line_len, "\n");
    uint32_t code = route(t, p);
    request_drop(request);
    return code ? code : respond(t);
}

EXPORT("[callback][async-lift]wasi:http/handler@0.3.0#handle")
uint32_t handle_callback(uint32_t event, uint32_t waitable, uint32_t code) {
    struct task *t = context_get();
    if (event == EVENT_NONE || waitable != t->waiting) return CALLBACK_WAIT | (t->set << 4);
    waitable_join(waitable, 0);
    switch (t->stage) {
    case SLEEPING:
        if (code != SUBTASK_RETURNED) return wait_on(t, SLEEPING, waitable);
        subtask_drop(waitable);
        return respond(t);
    case WRITING_BODY:
        t->out += code >> 4;
        t->out_len -= code >> 4;
        if ((code & 0xf) != COPY_COMPLETED) t->out_len = 0;
        return write_body(t);
    case WRITING_TRAILERS:
        return write_log(t);
    case WRITING_LOG:
        t->out += code >> 4;
        t->out_len -= code >> 4;
        if ((code & 0xf) != COPY_COMPLETED) t->out_len = 0;
        return write_log(t);
    }
    __builtin_trap();
}
