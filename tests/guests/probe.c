/*
 * probe: skiff's multi-command test guest (WASI preview 1, C, wasi-libc).
 *
 * argv[1] picks a command and the remaining arguments are its operands, so one module serves
 * many tests (`probe echo hi`, `probe hog 64`, `probe escape /data`, ...). Run it without
 * arguments for the list. Unknown commands and bad operands print usage and exit 2.
 *
 * tests/src/guests.rs builds it on demand with Debian's clang and wasi-libc:
 *
 *     clang --target=wasm32-wasi -O2 -o probe.wasm probe.c
 *
 * Only plain POSIX calls that wasi-libc maps onto WASI preview 1 are used; nothing needs the
 * wasi-emulated-* libraries.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2
#define EXIT_ESCAPED 3
#define EXIT_OOM 12

#define MIB (1024L * 1024L)

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

/* Sleeps `ms` milliseconds. wasi-libc implements nanosleep with poll_oneoff on a clock. */
static void sleep_ms(long ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Joins "a" and "b" with a '/' into a freshly allocated string (never freed: the process is short). */
static char *join(const char *a, const char *b) {
    size_t len = strlen(a) + 1 + strlen(b) + 1;
    char *out = malloc(len);
    if (out == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    snprintf(out, len, "%s/%s", a, b);
    return out;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---------------------------------------------------------------------------------------- */
/* Commands: each gets the operands after the command name and returns the exit code.        */
/* ---------------------------------------------------------------------------------------- */

/* echo ARGS...: the operands joined by single spaces, then a newline. */
static int cmd_echo(int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        if (i > 0) {
            putchar(' ');
        }
        fputs(argv[i], stdout);
    }
    putchar('\n');
    return 0;
}

/* env NAME...: `NAME=value` or `NAME unset`, one line per name. */
static int cmd_env(int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        const char *value = getenv(argv[i]);
        if (value != NULL) {
            printf("%s=%s\n", argv[i], value);
        } else {
            printf("%s unset\n", argv[i]);
        }
    }
    return 0;
}

/* exit N: says so on stderr and exits with N. */
static int cmd_exit(int argc, char **argv) {
    (void)argc;
    long code = parse_count(argv[0]);
    if (code < 0 || code > 255) {
        fprintf(stderr, "exit: bad code %s (want 0..255)\n", argv[0]);
        return EXIT_USAGE;
    }
    fprintf(stderr, "exiting %ld\n", code);
    return (int)code;
}

/* cat PATH...: each file's bytes to stdout; exit 1 if any could not be read. */
static int cmd_cat(int argc, char **argv) {
    int status = 0;
    char buf[16 * 1024];
    for (int i = 0; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (f == NULL) {
            fprintf(stderr, "cat %s: %s\n", argv[i], strerror(errno));
            status = 1;
            continue;
        }
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
            fwrite(buf, 1, n, stdout);
        }
        if (ferror(f)) {
            fprintf(stderr, "cat %s: %s\n", argv[i], strerror(errno));
            status = 1;
        }
        fclose(f);
    }
    return status;
}

/* write/append PATH TEXT: TEXT plus a newline, truncating ("w") or appending ("a"). */
static int write_text(const char *cmd, const char *mode, const char *path, const char *text) {
    FILE *f = fopen(path, mode);
    if (f == NULL) {
        fprintf(stderr, "%s %s: %s\n", cmd, path, strerror(errno));
        return 1;
    }
    int failed = fputs(text, f) < 0 || fputc('\n', f) == EOF;
    int saved = errno;
    if (fclose(f) != 0 && !failed) {
        failed = 1;
        saved = errno;
    }
    if (failed) {
        fprintf(stderr, "%s %s: %s\n", cmd, path, strerror(saved));
        return 1;
    }
    return 0;
}

static int cmd_write(int argc, char **argv) {
    (void)argc;
    return write_text("write", "w", argv[0], argv[1]);
}

static int cmd_append(int argc, char **argv) {
    (void)argc;
    return write_text("append", "a", argv[0], argv[1]);
}

/* ls DIR: entry names (without . and ..), sorted bytewise, one per line. */
static int cmd_ls(int argc, char **argv) {
    (void)argc;
    DIR *dir = opendir(argv[0]);
    if (dir == NULL) {
        fprintf(stderr, "ls %s: %s\n", argv[0], strerror(errno));
        return 1;
    }
    char **names = NULL;
    size_t count = 0, cap = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) {
            continue;
        }
        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            names = realloc(names, cap * sizeof *names);
            if (names == NULL) {
                fprintf(stderr, "ls: out of memory\n");
                return 1;
            }
        }
        names[count] = strdup(entry->d_name);
        if (names[count] == NULL) {
            fprintf(stderr, "ls: out of memory\n");
            return 1;
        }
        count++;
    }
    closedir(dir);
    qsort(names, count, sizeof *names, compare_names);
    for (size_t i = 0; i < count; i++) {
        puts(names[i]);
    }
    return 0;
}

/* pwd: the current directory as wasi-libc tracks it (starts at "/"). */
static int cmd_pwd(int argc, char **argv) {
    (void)argc;
    (void)argv;
    char buf[4096];
    if (getcwd(buf, sizeof buf) == NULL) {
        fprintf(stderr, "pwd: %s\n", strerror(errno));
        return 1;
    }
    puts(buf);
    return 0;
}

/* ---- escape DIR ------------------------------------------------------------------------- */

/*
 * Each attempt tries to reach something outside the preopened directory DIR and prints one
 * line: "<attempt>: blocked (<strerror>)" or "<attempt>: ESCAPED". Details of a success go to
 * stderr. Anything the attempts create inside DIR is removed again.
 */

static int escapes;

static void report(const char *attempt, int succeeded, int err) {
    if (succeeded) {
        printf("%s: ESCAPED\n", attempt);
        escapes++;
    } else {
        printf("%s: blocked (%s)\n", attempt, strerror(err));
    }
    fflush(stdout);
}

/* Opens `path` as a directory and lists it (to stderr). Returns 1 on success, else 0 + errno. */
static int list_dir(const char *path) {
    DIR *dir = opendir(path);
    if (dir == NULL) {
        return 0;
    }
    fprintf(stderr, "listing of %s:", path);
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        fprintf(stderr, " %s", entry->d_name);
    }
    fputc('\n', stderr);
    closedir(dir);
    return 1;
}

/* Opens `path` for reading and reads a little (to stderr). Returns 1 on success, else 0 + errno. */
static int read_file(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return 0;
    }
    char buf[64];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0) {
        return 0;
    }
    buf[n] = '\0';
    fprintf(stderr, "read from %s: %s\n", path, buf);
    return 1;
}

static void attempt_list(const char *label, const char *path) {
    int ok = list_dir(path);
    report(label, ok, errno);
}

static void attempt_read(const char *label, const char *path) {
    int ok = read_file(path);
    report(label, ok, errno);
}

/*
 * Creates the symlink `link` -> `target`, then follows `follow` (a directory if `as_dir`).
 * Creating the link is allowed to succeed: only following it out of DIR counts as an escape.
 */
static void attempt_symlink(const char *target, const char *link, const char *follow, int as_dir) {
    char label[1024];
    snprintf(label, sizeof label, "symlink %s -> %s, %s %s", link, target,
             as_dir ? "opendir" : "open", follow);
    unlink(link); /* left over from an earlier, interrupted run */
    if (symlink(target, link) != 0) {
        report(label, 0, errno);
        return;
    }
    fprintf(stderr, "created symlink %s -> %s\n", link, target);
    int ok = as_dir ? list_dir(follow) : read_file(follow);
    report(label, ok, errno);
    if (unlink(link) != 0) {
        fprintf(stderr, "cleanup: unlink %s: %s\n", link, strerror(errno));
    }
}

static void attempt_hardlink(const char *source, const char *name) {
    char label[1024];
    snprintf(label, sizeof label, "link %s -> %s", name, source);
    unlink(name);
    int ok = link(source, name) == 0;
    report(label, ok, errno);
    if (ok && unlink(name) != 0) {
        fprintf(stderr, "cleanup: unlink %s: %s\n", name, strerror(errno));
    }
}

static void attempt_rename(const char *from, const char *to) {
    char label[1024];
    snprintf(label, sizeof label, "rename %s -> %s", from, to);
    /* The file to move; if DIR is read-only this fails and the rename then fails too. */
    int fd = open(from, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        fprintf(stderr, "could not create %s: %s\n", from, strerror(errno));
    } else {
        close(fd);
    }
    int ok = rename(from, to) == 0;
    report(label, ok, errno);
    unlink(from);
}

static void attempt_mkdir(const char *path) {
    char label[1024];
    snprintf(label, sizeof label, "mkdir %s", path);
    int ok = mkdir(path, 0755) == 0;
    report(label, ok, errno);
    if (ok && rmdir(path) != 0) {
        fprintf(stderr, "cleanup: rmdir %s: %s\n", path, strerror(errno));
    }
}

/* escape DIR: exit 0 if every attempt was blocked, 3 if any escaped, 1 if DIR is unusable. */
static int cmd_escape(int argc, char **argv) {
    (void)argc;
    const char *dir = argv[0];
    /* Guard against a vacuous pass: DIR itself must be reachable. */
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "escape: cannot open %s: %s\n", dir, strerror(errno));
        return 1;
    }
    closedir(d);

    char label[1024];
    char *up2 = join(dir, "../..");
    snprintf(label, sizeof label, "opendir %s", up2);
    attempt_list(label, up2);

    attempt_read("open /etc/passwd", "/etc/passwd");

    char *dotdot_passwd = join(dir, "../../../../etc/passwd");
    snprintf(label, sizeof label, "open %s", dotdot_passwd);
    attempt_read(label, dotdot_passwd);

    attempt_read("open ../etc/passwd", "../etc/passwd");

    attempt_symlink("/etc", join(dir, "out"), join(dir, "out/passwd"), 0);
    attempt_symlink("../../../..", join(dir, "up"), join(dir, "up/etc/passwd"), 0);
    attempt_symlink("/", join(dir, "abs"), join(dir, "abs"), 1);

    attempt_hardlink("/etc/passwd", join(dir, "hl"));
    attempt_hardlink(dotdot_passwd, join(dir, "hl"));

    attempt_rename(join(dir, "x"), join(dir, "../x"));
    attempt_rename(join(dir, "x"), "../x");

    attempt_mkdir(join(dir, "../evil"));

    return escapes > 0 ? EXIT_ESCAPED : 0;
}

/* ---- resources and time ----------------------------------------------------------------- */

/* Newest chunk of `hog`; each chunk's first word points to the previous one, so the
 * allocations escape and the compiler cannot drop the malloc+memset pairs. */
static void *volatile hog_chunks;

/* hog MIB: allocate and touch MIB MiB, 1 MiB at a time. Exit 12 when malloc fails. */
static int cmd_hog(int argc, char **argv) {
    (void)argc;
    long want = parse_count(argv[0]);
    if (want < 0) {
        fprintf(stderr, "hog: bad size %s\n", argv[0]);
        return EXIT_USAGE;
    }
    for (long have = 0; have < want;) {
        char *chunk = malloc(MIB);
        if (chunk == NULL) {
            printf("allocation failed after %ld MiB\n", have);
            fflush(stdout);
            return EXIT_OOM;
        }
        memset(chunk, 0xA5, MIB); /* touch every page */
        *(void **)chunk = hog_chunks;
        hog_chunks = chunk;
        have++;
        if (have % 16 == 0) {
            printf("allocated %ld MiB\n", have);
            fflush(stdout);
        }
    }
    printf("allocated all %ld MiB\n", want);
    return 0;
}

/* spin: burn CPU forever without making a single host call. */
static int cmd_spin(int argc, char **argv) {
    (void)argc;
    (void)argv;
    volatile unsigned long counter = 0;
    for (;;) {
        counter++;
    }
}

/* sleep SECS: block in poll_oneoff for SECS seconds; 0 means forever. Prints nothing. */
static int cmd_sleep(int argc, char **argv) {
    (void)argc;
    long secs = parse_count(argv[0]);
    if (secs < 0) {
        fprintf(stderr, "sleep: bad seconds %s\n", argv[0]);
        return EXIT_USAGE;
    }
    if (secs == 0) {
        for (;;) {
            sleep_ms(3600L * 1000L); /* long blocking host calls: stopping must interrupt them */
        }
    }
    sleep_ms(secs * 1000L);
    return 0;
}

/* creep MIB MS: allocate and touch 1 MiB every MS ms until MIB MiB are held, printing
 * "holding N MiB" after each, then hold them forever (a memory hog that grows slowly enough to be
 * watched, and keeps running). Exit 12 when malloc fails. */
static int cmd_creep(int argc, char **argv) {
    (void)argc;
    long want = parse_count(argv[0]);
    long ms = parse_count(argv[1]);
    if (want < 0 || ms < 0) {
        fprintf(stderr, "creep: bad operands %s %s\n", argv[0], argv[1]);
        return EXIT_USAGE;
    }
    for (long have = 0; have < want;) {
        char *chunk = malloc(MIB);
        if (chunk == NULL) {
            printf("allocation failed after %ld MiB\n", have);
            fflush(stdout);
            return EXIT_OOM;
        }
        memset(chunk, 0xA5, MIB);
        *(void **)chunk = hog_chunks;
        hog_chunks = chunk;
        have++;
        printf("holding %ld MiB\n", have);
        fflush(stdout);
        sleep_ms(ms);
    }
    for (;;) {
        sleep_ms(3600L * 1000L);
    }
}

/* tick MS N: print "tick i" for i = 1..N (N = 0: forever), MS milliseconds apart. */
static int cmd_tick(int argc, char **argv) {
    (void)argc;
    long ms = parse_count(argv[0]);
    long n = parse_count(argv[1]);
    if (ms < 0 || n < 0) {
        fprintf(stderr, "tick: bad operands %s %s\n", argv[0], argv[1]);
        return EXIT_USAGE;
    }
    for (long i = 1; n == 0 || i <= n; i++) {
        printf("tick %ld\n", i);
        fflush(stdout);
        if (n == 0 || i < n) {
            sleep_ms(ms);
        }
    }
    return 0;
}

/* watch PATH MS N: print PATH's bytes then a newline every MS ms, N times (0: forever); a
   file that cannot be read prints 'watch PATH: error'. For files that change under a guest. */
static int cmd_watch(int argc, char **argv) {
    (void)argc;
    long ms = parse_count(argv[1]);
    long n = parse_count(argv[2]);
    if (ms < 0 || n < 0) {
        fprintf(stderr, "watch: bad operands %s %s\n", argv[1], argv[2]);
        return EXIT_USAGE;
    }
    char buf[16 * 1024];
    for (long i = 1; n == 0 || i <= n; i++) {
        FILE *f = fopen(argv[0], "rb");
        if (f == NULL) {
            printf("watch %s: %s\n", argv[0], strerror(errno));
        } else {
            size_t got;
            while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
                fwrite(buf, 1, got, stdout);
            }
            fclose(f);
            putchar('\n');
        }
        fflush(stdout);
        if (n == 0 || i < n) {
            sleep_ms(ms);
        }
    }
    return 0;
}

/* crash: say so on stderr, then execute `unreachable` (a wasm trap). */
static int cmd_crash(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fputs("crashing\n", stderr);
    __builtin_trap();
}

/* lines N: N lines of exactly 100 bytes ("line i xxx...x\n"), for log rotation tests. */
static int cmd_lines(int argc, char **argv) {
    (void)argc;
    long n = parse_count(argv[0]);
    if (n < 0) {
        fprintf(stderr, "lines: bad count %s\n", argv[0]);
        return EXIT_USAGE;
    }
    char line[101];
    for (long i = 1; i <= n; i++) {
        int len = snprintf(line, sizeof line, "line %ld ", i);
        memset(line + len, 'x', 99 - len);
        line[99] = '\n';
        fwrite(line, 1, 100, stdout);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Dispatch                                                                                  */
/* ---------------------------------------------------------------------------------------- */

struct command {
    const char *name;
    int min_args; /* operands after the command name */
    int max_args; /* -1: any number */
    int (*run)(int argc, char **argv);
    const char *help;
};

static const struct command commands[] = {
    {"echo", 0, -1, cmd_echo, "echo ARGS...       print ARGS joined by spaces"},
    {"env", 0, -1, cmd_env, "env NAME...        print NAME=value or NAME unset"},
    {"exit", 1, 1, cmd_exit, "exit N             print 'exiting N' to stderr, exit N"},
    {"cat", 1, -1, cmd_cat, "cat PATH...        print files; exit 1 if one fails"},
    {"write", 2, 2, cmd_write, "write PATH TEXT    create/truncate PATH with TEXT and a newline"},
    {"append", 2, 2, cmd_append, "append PATH TEXT   append TEXT and a newline to PATH"},
    {"ls", 1, 1, cmd_ls, "ls DIR             sorted entry names"},
    {"pwd", 0, 0, cmd_pwd, "pwd                print the working directory"},
    {"escape", 1, 1, cmd_escape, "escape DIR         sandbox escape attempts; exit 3 if any escaped"},
    {"hog", 1, 1, cmd_hog, "hog MIB            allocate+touch MIB MiB; exit 12 if malloc fails"},
    {"creep", 2, 2, cmd_creep, "creep MIB MS       add 1 MiB every MS ms up to MIB, then hold it"},
    {"spin", 0, 0, cmd_spin, "spin               busy loop forever, no host calls"},
    {"sleep", 1, 1, cmd_sleep, "sleep SECS         sleep SECS seconds (0: forever)"},
    {"tick", 2, 2, cmd_tick, "tick MS N          print 'tick i' every MS ms, N times (0: forever)"},
    {"watch", 3, 3, cmd_watch, "watch PATH MS N    print PATH every MS ms, N times (0: forever)"},
    {"crash", 0, 0, cmd_crash, "crash              print 'crashing' to stderr, then trap"},
    {"lines", 1, 1, cmd_lines, "lines N            print N lines of 100 bytes"},
};

#define COMMAND_COUNT (sizeof commands / sizeof commands[0])

static int usage(void) {
    fputs("usage: probe COMMAND [ARGS...]\ncommands:\n", stderr);
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        fprintf(stderr, "  %s\n", commands[i].help);
    }
    return EXIT_USAGE;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        return usage();
    }
    int nargs = argc - 2;
    for (size_t i = 0; i < COMMAND_COUNT; i++) {
        const struct command *c = &commands[i];
        if (strcmp(argv[1], c->name) != 0) {
            continue;
        }
        if (nargs < c->min_args || (c->max_args >= 0 && nargs > c->max_args)) {
            fprintf(stderr, "probe %s: wrong number of operands\n", c->name);
            return usage();
        }
        return c->run(nargs, argv + 2);
    }
    fprintf(stderr, "probe: unknown command '%s'\n", argv[1]);
    return usage();
}
