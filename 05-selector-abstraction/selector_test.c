/*
 * selector_test.c: the contract of selector.h, one rule a case, run on
 * every backend. CPython tests its `selectors` module the same way
 * (Lib/test/test_selectors.py): each test is written once and runs once
 * per selector class, on socketpairs and pipes.
 *
 *   ./selector_test               every case on every backend compiled in
 *   ./selector_test poll epoll    only on those
 *
 * The output is TAP, one line a case:
 *   ok 12 - epoll: register twice: EEXIST, the first key stays
 *   not ok 13 - poll: ...: selector_test.c:321: expected ..., got ...
 * Lines starting with '#' are notes. Exit status 1 if any case failed.
 *
 * Each case is a small function that checks one rule of selector.h and
 * stops at its first failed check. The harness runs it in a process of
 * its own, with a watchdog, so that a case that hangs or crashes fails
 * alone and the others still run; it closes the selectors and
 * descriptors the case opened, whatever the case left open. Every wait
 * is bounded: timeouts of tens of milliseconds, or a signal.
 *
 * Built with SANITIZE=1, AddressSanitizer checks for leaks as each case's
 * process exits: that is the test of "selector_close() releases
 * everything", case by case, on every backend.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "selector.h"

enum {
    WATCHDOG_SECONDS = 10, /* a case still running after this has hung */
    FD_TABLE = 1 << 16,    /* descriptor numbers the harness can track */
    BATCH_MAX = 64,        /* events a small case may get in one batch */
};

/* ---- How a case reports: fail, skip, note ---------------------------- */

static char why[768];     /* why the running case failed; empty: it has not */
static int why_line;      /* the line of the case where it failed */
static char context[128]; /* what the case was doing, for loops (optional) */
static char skip_reason[256];
static char notes[512];

/* Records the first failure of the case (later ones are consequences).
 * LINE 0: a helper failed, and REQUIRE() will add the case's line. */
static void fail(int line, const char *format, ...)
{
    if (why[0] != '\0')
        return;
    va_list args;
    va_start(args, format);
    vsnprintf(why, sizeof why, format, args);
    va_end(args);
    if (context[0] != '\0') {
        size_t used = strlen(why);
        snprintf(why + used, sizeof why - used, " (%s)", context);
    }
    why_line = line;
}

static void skip(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(skip_reason, sizeof skip_reason, format, args);
    va_end(args);
}

/* A line printed after the case's result, starting with '#'. */
static void note(const char *format, ...)
{
    size_t used = strlen(notes);
    va_list args;
    va_start(args, format);
    vsnprintf(notes + used, sizeof notes - used, format, args);
    va_end(args);
}

/* The checks. Each stops the case (return) when it fails. */
#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fail(__LINE__, __VA_ARGS__);                                       \
            return;                                                            \
        }                                                                      \
    } while (0)

/* CALL must return 0. */
#define CHECK_OK(call)                                                         \
    do {                                                                       \
        errno = 0;                                                             \
        if ((call) != 0) {                                                     \
            fail(__LINE__, "%s failed: %s", #call, errno_name(errno));         \
            return;                                                            \
        }                                                                      \
    } while (0)

/* CALL must return -1 with errno ERR. */
#define CHECK_ERROR(call, err)                                                 \
    do {                                                                       \
        errno = 0;                                                             \
        int result_ = (call);                                                  \
        int errno_ = errno;                                                    \
        if (result_ != -1 || errno_ != (err)) {                                \
            fail(__LINE__, "%s: expected -1 with %s, got %d%s%s", #call,       \
                 errno_name(err), result_, result_ == -1 ? " with " : "",      \
                 result_ == -1 ? errno_name(errno_) : "");                     \
            return;                                                            \
        }                                                                      \
    } while (0)

/* A helper below that returns false has recorded why; add where. */
#define REQUIRE(helper_call)                                                   \
    do {                                                                       \
        if (!(helper_call)) {                                                  \
            if (why_line == 0)                                                 \
                why_line = __LINE__;                                           \
            return;                                                            \
        }                                                                      \
    } while (0)

static const char *errno_name(int error)
{
    static const struct {
        int error;
        const char *name;
    } names[] = {
        {0, "success"},       {EAGAIN, "EAGAIN"}, {EBADF, "EBADF"},
        {EEXIST, "EEXIST"},   {EINTR, "EINTR"},   {EINVAL, "EINVAL"},
        {EMFILE, "EMFILE"},   {ENFILE, "ENFILE"}, {ENOENT, "ENOENT"},
        {ENOMEM, "ENOMEM"},   {ENOSYS, "ENOSYS"}, {EPERM, "EPERM"},
        {EPIPE, "EPIPE"},     {ERANGE, "ERANGE"}, {ENOTSOCK, "ENOTSOCK"},
        {EOVERFLOW, "EOVERFLOW"},
    };
    static char other[32];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].error == error)
            return names[i].name;
    snprintf(other, sizeof other, "errno %d", error);
    return other;
}

/* "READ", "WRITE", "READ|WRITE", or the bits in hex. BUF holds 32. */
static const char *events_name(unsigned events, char *buf)
{
    if (events == SELECTOR_READ)
        return "READ";
    if (events == SELECTOR_WRITE)
        return "WRITE";
    if (events == (SELECTOR_READ | SELECTOR_WRITE))
        return "READ|WRITE";
    snprintf(buf, 32, "%#x", events);
    return buf;
}

/* ---- What a case opens; the harness closes it afterwards ------------- */

static unsigned char tracked[FD_TABLE]; /* descriptors the case has open */
static int tracked_max = -1;
static struct selector *selectors[4]; /* selectors the case has open */

static bool track(int fd)
{
    if (fd >= FD_TABLE) {
        close(fd);
        fail(0, "descriptor %d is beyond the %d this test can track", fd, FD_TABLE);
        return false;
    }
    tracked[fd] = 1;
    if (fd > tracked_max)
        tracked_max = fd;
    return true;
}

static void close_fd(int fd)
{
    if (fd >= 0 && fd < FD_TABLE)
        tracked[fd] = 0;
    close(fd);
}

static struct selector *open_selector(const char *backend)
{
    for (size_t i = 0; i < sizeof selectors / sizeof selectors[0]; i++) {
        if (selectors[i] == NULL) {
            selectors[i] = selector_open(backend);
            if (selectors[i] == NULL)
                fail(0, "selector_open(\"%s\") failed: %s", backend, errno_name(errno));
            return selectors[i];
        }
    }
    fail(0, "a case may open only %zu selectors", sizeof selectors / sizeof selectors[0]);
    return NULL;
}

/* Closes SEL now, in the middle of the case. */
static void close_selector(struct selector *sel)
{
    for (size_t i = 0; i < sizeof selectors / sizeof selectors[0]; i++)
        if (selectors[i] == sel)
            selectors[i] = NULL;
    selector_close(sel);
}

static void close_everything(void)
{
    for (size_t i = 0; i < sizeof selectors / sizeof selectors[0]; i++) {
        selector_close(selectors[i]);
        selectors[i] = NULL;
    }
    for (int fd = 0; fd <= tracked_max; fd++)
        if (tracked[fd])
            close_fd(fd);
    tracked_max = -1;
}

/* A connected pair of UNIX stream sockets: SV[0] is the one the cases
 * register, SV[1] its peer, which makes it readable or hangs up. */
static bool make_pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
        fail(0, "socketpair: %s", errno_name(errno));
        return false;
    }
    return track(sv[0]) && track(sv[1]);
}

static bool make_pipe(int fds[2])
{
    if (pipe(fds) < 0) {
        fail(0, "pipe: %s", errno_name(errno));
        return false;
    }
    return track(fds[0]) && track(fds[1]);
}

/* An open regular file (already unlinked). */
static bool make_file(int *fd)
{
    char path[] = "/tmp/selector_test.XXXXXX";
    *fd = mkstemp(path);
    if (*fd < 0) {
        fail(0, "mkstemp: %s", errno_name(errno));
        return false;
    }
    unlink(path);
    return track(*fd);
}

/* Gives descriptor *FD the number NUMBER, closing whatever had it: the
 * way the next accept() or socket() reuses the number of a closed one. */
static bool move_fd(int *fd, int number)
{
    if (*fd == number)
        return true;
    if (dup2(*fd, number) < 0) {
        fail(0, "dup2(%d, %d): %s", *fd, number, errno_name(errno));
        return false;
    }
    if (!track(number))
        return false;
    close_fd(*fd);
    *fd = number;
    return true;
}

/* Writes one byte: makes the peer of FD readable. */
static bool put_byte(int fd)
{
    if (write(fd, "x", 1) != 1) {
        fail(0, "write to %d: %s", fd, errno_name(errno));
        return false;
    }
    return true;
}

/* Reads one byte: makes FD not readable again (it had one). */
static bool take_byte(int fd)
{
    char byte;
    if (read(fd, &byte, 1) != 1) {
        fail(0, "read from %d: %s", fd, errno_name(errno));
        return false;
    }
    return true;
}

/* Writes until the kernel takes no more: FD is then not writable. */
static bool fill(int fd)
{
    static const char block[4096];
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        fail(0, "fcntl O_NONBLOCK on %d: %s", fd, errno_name(errno));
        return false;
    }
    for (;;) {
        ssize_t sent = write(fd, block, sizeof block);
        if (sent < 0 && errno == EAGAIN)
            return true;
        if (sent < 0) {
            fail(0, "filling %d: %s", fd, errno_name(errno));
            return false;
        }
    }
}

static bool is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static int count_open_fds(void)
{
    long max = sysconf(_SC_OPEN_MAX);
    int count = 0;
    for (int fd = 0; fd < (max > 0 && max < FD_TABLE ? max : FD_TABLE); fd++)
        count += is_open(fd);
    return count;
}

static long fd_limit(void)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) < 0)
        return 0;
    return limit.rlim_cur == RLIM_INFINITY ? LONG_MAX : (long)limit.rlim_cur;
}

static double now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec * 1e3 + (double)now.tv_nsec / 1e6;
}

/* ---- Checking keys and batches --------------------------------------- */

/* FD has a key with EVENTS and DATA. */
static bool key_is(const struct selector *sel, int fd, unsigned events, void *data)
{
    struct selector_key key;
    char want[32], got[32];
    if (selector_get_key(sel, fd, &key) < 0) {
        fail(0, "selector_get_key(%d) failed: %s", fd, errno_name(errno));
        return false;
    }
    if (key.fd != fd || key.events != events || key.data != data) {
        fail(0, "key of %d: expected fd %d, events %s, data %p; got fd %d, events %s, data %p",
             fd, fd, events_name(events, want), data, key.fd, events_name(key.events, got),
             key.data);
        return false;
    }
    return true;
}

/* FD has no key: selector_get_key() says ENOENT. */
static bool not_registered(const struct selector *sel, int fd)
{
    struct selector_key key;
    errno = 0;
    if (selector_get_key(sel, fd, &key) != -1 || errno != ENOENT) {
        fail(0, "selector_get_key(%d): expected ENOENT (not registered), got %s", fd,
             errno_name(errno));
        return false;
    }
    return true;
}

/* Takes every event of the current batch into GOT (at most MAX); returns
 * how many, or -1. Checks what selector.h promises of each event. */
static int take_batch(struct selector *sel, struct selector_event *got, int max)
{
    struct selector_event event;
    char buf1[32], buf2[32];
    int count = 0;
    while (selector_next(sel, &event)) {
        if (count == max) {
            fail(0, "more than %d events in one batch", max);
            return -1;
        }
        if (event.events == 0 || (event.events & ~event.key.events) != 0) {
            fail(0, "fd %d: event %s is not within its key's events %s", event.key.fd,
                 events_name(event.events, buf1), events_name(event.key.events, buf2));
            return -1;
        }
        got[count++] = event;
    }
    return count;
}

/* What a batch should hold for one descriptor. */
struct want {
    int fd;
    unsigned events;
    void *data;
};

static void describe(char *buf, size_t size, const struct want *list, int count)
{
    char events[32];
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < count && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%sfd %d %s %p", i ? ", " : "",
                                 list[i].fd, events_name(list[i].events, events),
                                 list[i].data);
}

/* selector_select(TIMEOUT_MS), then selector_next() until it says no
 * more: the batch must be exactly WANT (in any order), and
 * selector_select() must have counted it. */
static bool batch_is(struct selector *sel, int timeout_ms, const struct want *want, int count)
{
    struct selector_event events[BATCH_MAX];
    struct want got[BATCH_MAX];
    int ready = selector_select(sel, timeout_ms);
    if (ready < 0) {
        fail(0, "selector_select(%d) failed: %s", timeout_ms, errno_name(errno));
        return false;
    }
    int taken = take_batch(sel, events, BATCH_MAX);
    if (taken < 0)
        return false;
    bool same = taken == count;
    for (int i = 0; i < taken; i++)
        got[i] = (struct want){events[i].key.fd, events[i].events, events[i].key.data};
    for (int i = 0; same && i < count; i++) {
        int j = 0;
        while (j < taken && got[j].fd != want[i].fd)
            j++;
        same = j < taken && got[j].events == want[i].events && got[j].data == want[i].data;
    }
    if (!same) {
        char want_text[300], got_text[300];
        describe(want_text, sizeof want_text, want, count);
        describe(got_text, sizeof got_text, got, taken);
        fail(0, "batch: expected {%s}, got {%s}", want_text, got_text);
        return false;
    }
    if (ready != taken) {
        fail(0, "selector_select() returned %d, but the batch had %d events", ready, taken);
        return false;
    }
    return true;
}

/* A batch with nothing in it. */
static bool batch_is_empty(struct selector *sel, int timeout_ms)
{
    return batch_is(sel, timeout_ms, NULL, 0);
}

/* ---- Signals: the watchdog, and the case that interrupts a wait ------ */

static char watchdog_line[512]; /* the "not ok" line of the running case */
static size_t watchdog_length;
static int result_fd = -1; /* where the case's process writes its result */
static volatile sig_atomic_t alarms;         /* SIGALRMs since the count began */
static volatile sig_atomic_t alarms_allowed; /* how many before it counts as a hang */

/* SIGALRM: either a signal a case sent itself on purpose (it interrupts
 * the wait, and that is all), or the watchdog: the case hangs. */
static void on_alarm(int signo)
{
    (void)signo;
    if (alarms++ < alarms_allowed)
        return;
    ssize_t written = write(result_fd, watchdog_line, watchdog_length);
    (void)written;
    _exit(1);
}

static void arm_watchdog(void)
{
    alarms = 0;
    alarms_allowed = 0;
    alarm(WATCHDOG_SECONDS);
}

/* Sends this process SIGALRM after FIRST_MS, then every EVERY_MS; after
 * LIMIT of them the case counts as hung. */
static void send_alarms(int first_ms, int every_ms, int limit)
{
    struct itimerval timer = {
        .it_value = {first_ms / 1000, first_ms % 1000 * 1000},
        .it_interval = {every_ms / 1000, every_ms % 1000 * 1000},
    };
    alarms = 0;
    alarms_allowed = limit;
    setitimer(ITIMER_REAL, &timer, NULL);
}

/* Stops send_alarms(), re-arms the watchdog, and says how many came. */
static int stop_alarms(void)
{
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    int count = alarms;
    arm_watchdog();
    return count;
}

/* ---- The cases: one rule of selector.h each -------------------------- */

/* selector_open(NAME) runs that backend; selector_name() says which. */
static void test_open_by_name(const char *backend)
{
    struct selector *sel;
    REQUIRE(sel = open_selector(backend));
    CHECK(strcmp(selector_name(sel), backend) == 0, "selector_name() is \"%s\", expected \"%s\"",
          selector_name(sel), backend);
}

/* Events 0, or with bits besides READ and WRITE: EINVAL, and nothing
 * changes. Register registers nothing; modify leaves the key, and what
 * the kernel watches, as they were. */
static void test_invalid_events(const char *backend)
{
    static const unsigned bad[] = {0, 1u << 2, SELECTOR_READ | 1u << 2, 1u << 31, ~0u};
    struct selector *sel;
    int sv[2], data, other;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(make_pair(sv));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        CHECK(selector_register(sel, sv[0], bad[i], &data) == -1 && errno == EINVAL,
              "register with events %#x: expected EINVAL, got %s", bad[i], errno_name(errno));
        REQUIRE(not_registered(sel, sv[0]));
    }
    CHECK_OK(selector_register(sel, sv[0], SELECTOR_WRITE, &data));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        CHECK(selector_modify(sel, sv[0], bad[i], &other) == -1 && errno == EINVAL,
              "modify with events %#x: expected EINVAL, got %s", bad[i], errno_name(errno));
        REQUIRE(key_is(sel, sv[0], SELECTOR_WRITE, &data));
    }
    struct want writable[] = {{sv[0], SELECTOR_WRITE, &data}};
    REQUIRE(batch_is(sel, 0, writable, 1));
}

/* A negative descriptor: EBADF, from every function that takes one. */
static void test_negative_fd(const char *backend)
{
    struct selector *sel;
    struct selector_key key;
    REQUIRE(sel = open_selector(backend));
    CHECK_ERROR(selector_register(sel, -1, SELECTOR_READ, NULL), EBADF);
    CHECK_ERROR(selector_register(sel, INT_MIN, SELECTOR_READ, NULL), EBADF);
    CHECK_ERROR(selector_modify(sel, -1, SELECTOR_READ, NULL), EBADF);
    CHECK_ERROR(selector_unregister(sel, -1), EBADF);
    CHECK_ERROR(selector_get_key(sel, -1, &key), EBADF);
}

/* Registering a descriptor twice: EEXIST, and the first key stays. */
static void test_register_twice(const char *backend)
{
    struct selector *sel;
    int sv[2], first, second;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(make_pair(sv));
    CHECK_OK(selector_register(sel, sv[0], SELECTOR_READ, &first));
    CHECK_ERROR(selector_register(sel, sv[0], SELECTOR_WRITE, &second), EEXIST);
    REQUIRE(key_is(sel, sv[0], SELECTOR_READ, &first));
}

/* modify, unregister and get_key of a descriptor without a key: ENOENT.
 * Never registered, unregistered already, or a number far beyond any
 * the selector has seen: all the same. */
static void test_not_registered(const char *backend)
{
    struct selector *sel;
    struct selector_key key;
    int sv[2], data;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(make_pair(sv));
    CHECK_ERROR(selector_modify(sel, sv[0], SELECTOR_READ, &data), ENOENT);
    CHECK_ERROR(selector_unregister(sel, sv[0]), ENOENT);
    CHECK_ERROR(selector_get_key(sel, sv[0], &key), ENOENT);

    CHECK_OK(selector_register(sel, sv[0], SELECTOR_READ, &data));
    CHECK_OK(selector_unregister(sel, sv[0]));
    CHECK_ERROR(selector_modify(sel, sv[0], SELECTOR_READ, &data), ENOENT);
    CHECK_ERROR(selector_unregister(sel, sv[0]), ENOENT);
    CHECK_ERROR(selector_get_key(sel, sv[0], &key), ENOENT);

    CHECK_ERROR(selector_modify(sel, INT_MAX, SELECTOR_READ, &data), ENOENT);
    CHECK_ERROR(selector_unregister(sel, INT_MAX), ENOENT);
    CHECK_ERROR(selector_get_key(sel, INT_MAX, &key), ENOENT);
}

/* A number that is not an open descriptor cannot be registered: EBADF,
 * and no key is left (select and poll must ask the kernel themselves:
 * they would only find out at the next wait). */
static void test_register_closed_fd(const char *backend)
{
    struct selector *sel;
    int sv[2], data;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(make_pair(sv));
    close_fd(sv[0]);
    CHECK_ERROR(selector_register(sel, sv[0], SELECTOR_READ, &data), EBADF);
    REQUIRE(not_registered(sel, sv[0]));
    REQUIRE(batch_is_empty(sel, 0));
}

/* INT_MAX is not an open descriptor either (no limit goes that far): the
 * answer is EBADF, at once -- not a table grown to INT_MAX entries first
 * (ENOMEM, or a loop that never ends). select may say ERANGE instead:
 * the number is beyond FD_SETSIZE as well. */
static void test_register_int_max(const char *backend)
{
    struct selector *sel;
    int data;
    REQUIRE(sel = open_selector(backend));
    errno = 0;
    int result = selector_register(sel, INT_MAX, SELECTOR_READ, &data);
    int error = errno;
    CHECK(result == -1 && (error == EBADF || (error == ERANGE && strcmp(backend, "select") == 0)),
          "register(INT_MAX): expected EBADF, got %d%s%s", result, result == -1 ? " with " : "",
          result == -1 ? errno_name(error) : "");
    REQUIRE(not_registered(sel, INT_MAX));
}

/* A descriptor the kernel refuses to watch fails to register, and leaves
 * no key behind: a second try fails the same way, not with EEXIST. epoll
 * refuses a regular file (EPERM: it cannot say when a file is "ready").
 * select and poll accept one, and report it always ready. */
static void test_kernel_refuses(const char *backend)
{
    struct selector *sel;
    int file, data;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(make_file(&file));
    if (strcmp(backend, "epoll") == 0) {
        CHECK_ERROR(selector_register(sel, file, SELECTOR_READ, &data), EPERM);
        REQUIRE(not_registered(sel, file));
        CHECK_ERROR(selector_register(sel, file, SELECTOR_READ, &data), EPERM);
        REQUIRE(batch_is_empty(sel, 0));
    } else {
        CHECK_OK(selector_register(sel, file, SELECTOR_READ, &data));
        struct want ready[] = {{file, SELECTOR_READ, &data}};
        REQUIRE(batch_is(sel, 0, ready, 1));
        note("# %s takes a regular file (the kernel never refuses one); checked it is "
             "always ready instead\n",
             backend);
    }
}

/* get_key() hands out a copy of the key: its fd, events and data. */
static void test_get_key(const char *backend)
{
    struct selector *sel;
    struct selector_key key;
    int sv[2], data;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(make_pair(sv));
    CHECK_OK(selector_register(sel, sv[0], SELECTOR_READ | SELECTOR_WRITE, &data));
    REQUIRE(key_is(sel, sv[0], SELECTOR_READ | SELECTOR_WRITE, &data));
    CHECK_OK(selector_get_key(sel, sv[0], &key));
    key.events = SELECTOR_WRITE; /* a copy: changing it changes nothing */
    key.data = NULL;
    REQUIRE(key_is(sel, sv[0], SELECTOR_READ | SELECTOR_WRITE, &data));
}

/* modify() changes what the descriptor waits for and its data: get_key()
 * and the next batch both show the new key. */
static void test_modify(const char *backend)
{
    struct selector *sel;
    int sv[2], first, second;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(make_pair(sv));
    REQUIRE(put_byte(sv[1])); /* sv[0]: readable and writable */
    CHECK_OK(selector_register(sel, sv[0], SELECTOR_READ, &first));
    struct want read[] = {{sv[0], SELECTOR_READ, &first}};
    REQUIRE(batch_is(sel, 0, read, 1));

    CHECK_OK(selector_modify(sel, sv[0], SELECTOR_WRITE, &second));
    REQUIRE(key_is(sel, sv[0], SELECTOR_WRITE, &second));
    struct want write[] = {{sv[0], SELECTOR_WRITE, &second}};
    REQUIRE(batch_is(sel, 0, write, 1));

    CHECK_OK(selector_modify(sel, sv[0], SELECTOR_READ | SELECTOR_WRITE, &first));
    struct want both[] = {{sv[0], SELECTOR_READ | SELECTOR_WRITE, &first}};
    REQUIRE(batch_is(sel, 0, both, 1));
}

/* modify() with the events the key has makes no system call, so changing
 * only the data is free. Proof without strace: close the descriptor
 * behind the selector's back; a backend that asked the kernel anything
 * now would fail (epoll_ctl() on a closed descriptor: EBADF). select and
 * poll ask the kernel nothing to change a key, so only epoll can fail
 * here; for them the case checks the data changed. */
static void test_modify_data_alone(const char *backend)
{
    struct selector *sel;
    int sv[2], first, second;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(make_pair(sv));
    CHECK_OK(selector_register(sel, sv[0], SELECTOR_READ, &first));
    close_fd(sv[0]); /* nothing may be opened until unregister */
    CHECK_OK(selector_modify(sel, sv[0], SELECTOR_READ, &second));
    REQUIRE(key_is(sel, sv[0], SELECTOR_READ, &second));
    CHECK_OK(selector_modify(sel, sv[0], SELECTOR_READ, &second));
    CHECK_OK(selector_unregister(sel, sv[0]));
}

/* A modify() the kernel refuses leaves the key as it was, whole: a
 * modify to new events of a descriptor closed behind the selector's back
 * either fails with EBADF and the key keeps its old events and old data
 * (epoll: epoll_ctl(MOD) says EBADF), or -- for a backend that asks the
 * kernel nothing here, like select and poll -- succeeds, and the key is
 * all new. Never half of each. */
static void test_failed_modify(const char *backend)
{
    struct selector *sel;
    int sv[2], first, second;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(make_pair(sv));
    CHECK_OK(selector_register(sel, sv[0], SELECTOR_READ, &first));
    close_fd(sv[0]);
    errno = 0;
    int result = selector_modify(sel, sv[0], SELECTOR_WRITE, &second);
    int error = errno;
    if (result == -1) {
        CHECK(error == EBADF, "modify of a closed descriptor failed with %s, expected EBADF",
              errno_name(error));
        REQUIRE(key_is(sel, sv[0], SELECTOR_READ, &first));
    } else {
        CHECK(strcmp(backend, "epoll") != 0, "epoll: modify of a closed descriptor succeeded");
        REQUIRE(key_is(sel, sv[0], SELECTOR_WRITE, &second));
        note("# %s makes no system call in modify(): it cannot fail there\n", backend);
    }
    CHECK_OK(selector_unregister(sel, sv[0]));
}

/* After unregister() the descriptor is not reported any more, and it is
 * left as it was: open, its bytes unread. */
static void test_unregister(const char *backend)
{
    struct selector *sel;
    int a[2], b[2], data_a, data_b;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(make_pair(a));
    REQUIRE(make_pair(b));
    REQUIRE(put_byte(a[1]));
    REQUIRE(put_byte(b[1]));
    CHECK_OK(selector_register(sel, a[0], SELECTOR_READ, &data_a));
    CHECK_OK(selector_register(sel, b[0], SELECTOR_READ, &data_b));
    CHECK_OK(selector_unregister(sel, a[0]));
    REQUIRE(not_registered(sel, a[0]));
    struct want only_b[] = {{b[0], SELECTOR_READ, &data_b}};
    REQUIRE(batch_is(sel, 0, only_b, 1));
    CHECK(is_open(a[0]), "unregister closed descriptor %d", a[0]);
    REQUIRE(take_byte(a[0]));
}

/* Several keys: removing and changing some leaves the others exactly as
 * they were (a backend that keeps an array, like poll's, moves entries
 * around when one goes). */
static void test_several_keys(const char *backend)
{
    struct selector *sel;
    int sv[5][2];
    static int tag[8];
    REQUIRE(sel = open_selector(backend));
    for (int i = 0; i < 5; i++) {
        REQUIRE(make_pair(sv[i]));
        REQUIRE(put_byte(sv[i][1]));
        CHECK_OK(selector_register(sel, sv[i][0], SELECTOR_READ | SELECTOR_WRITE, &tag[i]));
    }
    CHECK_OK(selector_unregister(sel, sv[1][0]));
    CHECK_OK(selector_unregister(sel, sv[3][0]));
    CHECK_OK(selector_modify(sel, sv[4][0], SELECTOR_READ, &tag[7]));
    struct want three[] = {
        {sv[0][0], SELECTOR_READ | SELECTOR_WRITE, &tag[0]},
        {sv[2][0], SELECTOR_READ | SELECTOR_WRITE, &tag[2]},
        {sv[4][0], SELECTOR_READ, &tag[7]},
    };
    REQUIRE(batch_is(sel, 0, three, 3));
    CHECK_OK(selector_register(sel, sv[1][0], SELECTOR_WRITE, &tag[5]));
    CHECK_OK(selector_unregister(sel, sv[0][0]));
    struct want again[] = {
        {sv[1][0], SELECTOR_WRITE, &tag[5]},
        {sv[2][0], SELECTOR_READ | SELECTOR_WRITE, &tag[2]},
        {sv[4][0], SELECTOR_READ, &tag[7]},
    };
    REQUIRE(batch_is(sel, 0, again, 3));
}

/* The start of the three cases below, a program that closes a socket
 * before it unregisters it: the pair OLD, its socket OLD[0] registered for
 * READ with OLD_DATA, with a byte to read (nothing of which may reach a
 * new socket), then closed. Its number goes in *NUMBER. */
static bool register_then_close(struct selector *sel, int old[2], void *old_data, int *number)
{
    if (!make_pair(old) || !put_byte(old[1]))
        return false;
    if (selector_register(sel, old[0], SELECTOR_READ, old_data) < 0) {
        fail(0, "selector_register(%d): %s", old[0], errno_name(errno));
        return false;
    }
    *number = old[0];
    close_fd(old[0]);
    return true;
}

/* A new pair NEW whose socket NEW[0] gets NUMBER, the number of a closed
 * descriptor, as the next accept() would. */
static bool reuse_number(int new[2], int number)
{
    return make_pair(new) && move_fd(&new[0], number);
}

/* unregister() still works when the descriptor was closed first, and
 * the number, once a new socket has it, can be registered again: the new
 * key gets the new socket's events, and nothing of the old one. */
static void test_unregister_after_close(const char *backend)
{
    struct selector *sel;
    int old[2], new[2], old_data, new_data, number;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(register_then_close(sel, old, &old_data, &number));
    close_fd(old[1]);
    CHECK_OK(selector_unregister(sel, number));
    REQUIRE(not_registered(sel, number));

    REQUIRE(reuse_number(new, number));
    CHECK_OK(selector_register(sel, number, SELECTOR_READ | SELECTOR_WRITE, &new_data));
    struct want fresh[] = {{number, SELECTOR_WRITE, &new_data}}; /* nothing to read yet */
    REQUIRE(batch_is(sel, 0, fresh, 1));
}

/* The number of a closed descriptor may come back (the next accept())
 * before the program unregisters the old key. unregister() then removes
 * the old key all the same (epoll: the new socket is not in the epoll
 * set, and EPOLL_CTL_DEL says ENOENT: not an error there), and the new
 * socket registers as new. */
static void test_unregister_after_reuse(const char *backend)
{
    struct selector *sel;
    int old[2], new[2], old_data, new_data, number;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(register_then_close(sel, old, &old_data, &number));
    REQUIRE(reuse_number(new, number));
    CHECK_ERROR(selector_register(sel, number, SELECTOR_READ, &new_data), EEXIST);
    CHECK_OK(selector_unregister(sel, number));
    CHECK_OK(selector_register(sel, number, SELECTOR_READ, &new_data));
    REQUIRE(batch_is_empty(sel, 0));
    REQUIRE(put_byte(new[1]));
    struct want readable[] = {{number, SELECTOR_READ, &new_data}};
    REQUIRE(batch_is(sel, 0, readable, 1));
}

/* A close() without unregister, and the number reused by a new socket
 * before the program calls modify(): select and poll ask the kernel
 * nothing and succeed; epoll's kernel says ENOENT (it never watched the
 * new socket) and the old key stays, whole. On every backend the key is
 * still there, and unregister, then register, makes it the new socket's. */
static void test_modify_after_reuse(const char *backend)
{
    struct selector *sel;
    int old[2], new[2], old_data, new_data, number;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(register_then_close(sel, old, &old_data, &number));
    REQUIRE(reuse_number(new, number));
    errno = 0;
    int result = selector_modify(sel, number, SELECTOR_WRITE, &new_data);
    int error = errno;
    if (strcmp(backend, "epoll") == 0) {
        CHECK(result == -1 && error == ENOENT,
              "epoll: modify of a reused number: expected -1 with ENOENT, got %d%s%s", result,
              result == -1 ? " with " : "", result == -1 ? errno_name(error) : "");
        REQUIRE(key_is(sel, number, SELECTOR_READ, &old_data));
    } else {
        CHECK(result == 0, "%s: modify of a reused number failed: %s", backend, errno_name(error));
        REQUIRE(key_is(sel, number, SELECTOR_WRITE, &new_data));
    }
    CHECK_OK(selector_unregister(sel, number));
    REQUIRE(not_registered(sel, number));
    CHECK_OK(selector_register(sel, number, SELECTOR_READ | SELECTOR_WRITE, &new_data));
    struct want fresh[] = {{number, SELECTOR_WRITE, &new_data}};
    REQUIRE(batch_is(sel, 0, fresh, 1));
}

/* EEXIST means "FD has a key", and nothing else. After a close() without
 * unregister, while a copy (dup()) keeps the file open, epoll still
 * watches that file under the number, even once unregister has removed
 * the key, and still reports it. When the number names the same file
 * again, registering it must work, with the new events and data (not
 * fail with EEXIST and no key); and registered in the middle of a batch
 * that holds the old watch's event, it gets nothing of that batch. */
static void test_register_after_close_of_a_copy(const char *backend)
{
    struct selector *sel;
    struct selector_event event;
    int sv[2], old_data, new_data;
    char buf[32];
    REQUIRE(sel = open_selector(backend));
    REQUIRE(make_pair(sv));
    int number = sv[0], copy = dup(sv[0]);
    CHECK(copy >= 0, "dup: %s", errno_name(errno));
    REQUIRE(track(copy));
    CHECK_OK(selector_register(sel, number, SELECTOR_READ, &old_data));
    close_fd(number);
    CHECK_OK(selector_unregister(sel, number));
    REQUIRE(not_registered(sel, number));
    REQUIRE(put_byte(sv[1])); /* epoll's old watch is ready: in the batch, with no key */
    CHECK(selector_select(sel, 0) >= 0, "selector_select: %s", errno_name(errno));
    REQUIRE(move_fd(&copy, number)); /* the number names the same file again */
    CHECK_OK(selector_register(sel, number, SELECTOR_READ | SELECTOR_WRITE, &new_data));
    REQUIRE(key_is(sel, number, SELECTOR_READ | SELECTOR_WRITE, &new_data));
    CHECK(!selector_next(sel, &event),
          "fd %d, registered after the wait, got %s from the batch", event.key.fd,
          events_name(event.events, buf));
    struct want both[] = {{number, SELECTOR_READ | SELECTOR_WRITE, &new_data}};
    REQUIRE(batch_is(sel, 0, both, 1));
}

/* A batch holds only the events each key asked for. Three sockets, each
 * both readable and writable, asking READ, WRITE and both, get READ,
 * WRITE and both; a fourth, idle, asking READ, is not in the batch. */
static void test_only_asked_events(const char *backend)
{
    struct selector *sel;
    int reader[2], writer[2], both[2], idle[2], data[4];
    REQUIRE(sel = open_selector(backend));
    REQUIRE(make_pair(reader) && make_pair(writer) && make_pair(both) && make_pair(idle));
    REQUIRE(put_byte(reader[1]) && put_byte(writer[1]) && put_byte(both[1]));
    CHECK_OK(selector_register(sel, reader[0], SELECTOR_READ, &data[0]));
    CHECK_OK(selector_register(sel, writer[0], SELECTOR_WRITE, &data[1]));
    CHECK_OK(selector_register(sel, both[0], SELECTOR_READ | SELECTOR_WRITE, &data[2]));
    CHECK_OK(selector_register(sel, idle[0], SELECTOR_READ, &data[3]));
    struct want asked[] = {
        {reader[0], SELECTOR_READ, &data[0]},
        {writer[0], SELECTOR_WRITE, &data[1]},
        {both[0], SELECTOR_READ | SELECTOR_WRITE, &data[2]},
    };
    REQUIRE(batch_is(sel, 0, asked, 3));
}

/* A hang-up reaches a READ key as READ, even where the kernel says only
 * "hung up" (poll's POLLHUP without POLLIN, for a pipe whose writer has
 * gone). The read() that follows finds end-of-file. */
static void test_hangup_read(const char *backend)
{
    struct selector *sel;
    int fds[2], sv[2], pipe_data, socket_data;
    char byte;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(make_pipe(fds));
    REQUIRE(make_pair(sv));
    CHECK_OK(selector_register(sel, fds[0], SELECTOR_READ, &pipe_data));
    CHECK_OK(selector_register(sel, sv[0], SELECTOR_READ, &socket_data));
    REQUIRE(batch_is_empty(sel, 0));
    close_fd(fds[1]);
    close_fd(sv[1]);
    struct want hung_up[] = {
        {fds[0], SELECTOR_READ, &pipe_data},
        {sv[0], SELECTOR_READ, &socket_data},
    };
    REQUIRE(batch_is(sel, 0, hung_up, 2));
    CHECK(read(fds[0], &byte, 1) == 0, "read() of the pipe after the hang-up: not end-of-file");
    CHECK(read(sv[0], &byte, 1) == 0, "read() of the socket after the hang-up: not end-of-file");
}

/* A hang-up reaches a WRITE key as WRITE, even when it is full and not
 * writable (poll's POLLERR for a pipe whose reader has gone). The write()
 * that follows finds out: EPIPE. */
static void test_hangup_write(const char *backend)
{
    struct selector *sel;
    int fds[2], sv[2], pipe_data, socket_data;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(make_pipe(fds));
    REQUIRE(make_pair(sv));
    REQUIRE(fill(fds[1]));
    REQUIRE(fill(sv[0]));
    CHECK_OK(selector_register(sel, fds[1], SELECTOR_WRITE, &pipe_data));
    CHECK_OK(selector_register(sel, sv[0], SELECTOR_WRITE, &socket_data));
    REQUIRE(batch_is_empty(sel, 0)); /* both full: not writable */
    close_fd(fds[0]);
    close_fd(sv[1]);
    struct want hung_up[] = {
        {fds[1], SELECTOR_WRITE, &pipe_data},
        {sv[0], SELECTOR_WRITE, &socket_data},
    };
    REQUIRE(batch_is(sel, 0, hung_up, 2));
    errno = 0;
    CHECK(write(fds[1], "x", 1) < 0 && errno == EPIPE, "write() after the hang-up: %s, expected EPIPE",
          errno_name(errno));
}

/* The read end of a pipe, registered for WRITE alone (it is never
 * writable), and its writer gone: poll and epoll report the hang-up to
 * the WRITE key, as WRITE; Linux's select() counts this hang-up as
 * readable only, so the select backend reports nothing (selector.h says
 * so). READ as well hears of it on every backend. */
static void test_hangup_write_only_pipe_reader(const char *backend)
{
    struct selector *sel;
    int fds[2], data;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(make_pipe(fds));
    CHECK_OK(selector_register(sel, fds[0], SELECTOR_WRITE, &data));
    REQUIRE(batch_is_empty(sel, 0));
    close_fd(fds[1]);
    struct want hung_up[] = {{fds[0], SELECTOR_WRITE, &data}};
    if (strcmp(backend, "select") == 0) {
        REQUIRE(batch_is_empty(sel, 0));
        note("# select: this hang-up is readable only: a WRITE key does not hear of it\n");
    } else {
        REQUIRE(batch_is(sel, 0, hung_up, 1));
    }
    CHECK_OK(selector_modify(sel, fds[0], SELECTOR_READ | SELECTOR_WRITE, &data));
    unsigned expected = strcmp(backend, "select") == 0 ? SELECTOR_READ
                                                       : SELECTOR_READ | SELECTOR_WRITE;
    struct want both[] = {{fds[0], expected, &data}};
    REQUIRE(batch_is(sel, 0, both, 1));
}

/* Timeout 0 does not wait: it returns 0 at once when nothing is ready. */
static void test_timeout_zero(const char *backend)
{
    struct selector *sel;
    struct selector_event event;
    int sv[2], data;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(make_pair(sv));
    CHECK_OK(selector_register(sel, sv[0], SELECTOR_READ, &data));
    double start = now_ms();
    int ready = selector_select(sel, 0);
    double took = now_ms() - start;
    CHECK(ready == 0, "selector_select(0) returned %d (%s), expected 0", ready, errno_name(errno));
    CHECK(took < 100, "selector_select(0) took %.1f ms", took);
    CHECK(!selector_next(sel, &event), "selector_next() after a batch of 0 gave fd %d",
          event.key.fd);
}

/* A timeout of N ms waits about N ms (not less; the upper bound is
 * generous, for a loaded machine) and returns 0. */
static void test_timeout_waits(const char *backend)
{
    enum { TIMEOUT = 50 };
    struct selector *sel;
    int sv[2], data;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(make_pair(sv));
    CHECK_OK(selector_register(sel, sv[0], SELECTOR_READ, &data));
    double start = now_ms();
    int ready = selector_select(sel, TIMEOUT);
    double took = now_ms() - start;
    CHECK(ready == 0, "selector_select(%d) returned %d (%s), expected 0", TIMEOUT, ready,
          errno_name(errno));
    CHECK(took >= TIMEOUT * 0.9 && took < TIMEOUT + 1000,
          "selector_select(%d) returned after %.1f ms", TIMEOUT, took);
}

/* Any timeout, however long, returns at once when a descriptor is ready
 * (a timeout of more than a second, or INT_MAX ms, must still convert to
 * what the kernel takes: no overflow, no "invalid argument"). */
static void test_long_timeout_ready(const char *backend)
{
    static const int timeouts[] = {1500, 999999, INT_MAX};
    struct selector *sel;
    int sv[2], data;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(make_pair(sv));
    REQUIRE(put_byte(sv[1]));
    CHECK_OK(selector_register(sel, sv[0], SELECTOR_READ, &data));
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
        snprintf(context, sizeof context, "timeout %d ms", timeouts[i]);
        double start = now_ms();
        struct want ready[] = {{sv[0], SELECTOR_READ, &data}};
        REQUIRE(batch_is(sel, timeouts[i], ready, 1));
        double took = now_ms() - start;
        CHECK(took < 500, "selector_select(%d) with a ready descriptor took %.0f ms", timeouts[i],
              took);
    }
}

/* A selector with no keys: select waits out its timeout and returns 0
 * (epoll_wait() refuses room for 0 events: the backend must ask for 1). */
static void test_empty_selector(const char *backend)
{
    struct selector *sel;
    struct selector_event event;
    REQUIRE(sel = open_selector(backend));
    CHECK(!selector_next(sel, &event), "selector_next() before any select gave an event");
    REQUIRE(batch_is_empty(sel, 0));
    double start = now_ms();
    REQUIRE(batch_is_empty(sel, 30));
    double took = now_ms() - start;
    CHECK(took >= 27, "selector_select(30) on an empty selector returned after %.1f ms", took);
}

/* A signal that arrives while selector_select() waits ends the wait: it
 * returns 0 with no events -- not -1 with EINTR, and not after waiting
 * out the rest of the timeout -- and the previous batch is gone. With
 * timeout -1, "for ever", the signal is the only way out: a library that
 * restarted the wait would hang here, and the watchdog fails the case. */
static void test_signal_ends_wait(const char *backend)
{
    static const int timeouts[] = {-1, 1000};
    struct selector *sel;
    struct selector_event event;
    int sv[2], data;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(make_pair(sv));
    CHECK_OK(selector_register(sel, sv[0], SELECTOR_READ, &data));
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
        /* A batch whose event is left untaken; then nothing is ready. */
        REQUIRE(put_byte(sv[1]));
        CHECK(selector_select(sel, 0) == 1, "the readable socket was not reported");
        REQUIRE(take_byte(sv[0]));

        send_alarms(20, 50, 40); /* the first after 20 ms; 40: hung */
        double start = now_ms();
        errno = 0;
        int ready = selector_select(sel, timeouts[i]);
        int error = errno;
        double took = now_ms() - start;
        int signals = stop_alarms();
        CHECK(ready == 0, "selector_select(%d) interrupted by a signal returned %d%s%s, expected 0",
              timeouts[i], ready, ready < 0 ? " with " : "", ready < 0 ? errno_name(error) : "");
        CHECK(signals > 0, "selector_select(%d) returned after %.1f ms, before any signal",
              timeouts[i], took);
        CHECK(took < 500, "selector_select(%d) returned %.0f ms after the signal", timeouts[i],
              took - 20);
        CHECK(!selector_next(sel, &event),
              "after an interrupted select, selector_next() gave fd %d (from the batch before)",
              event.key.fd);
    }
}

/* Two sockets ready in one batch, A and B; the program takes the first
 * event (calls its callback) and that callback unregisters the other:
 * its event, still waiting in the batch, is not handed out. Returns the
 * descriptor that was left (B) in *OTHER, or -1 on failure. */
static bool batch_of_two(struct selector *sel, int a[2], int b[2], void *data_a, void *data_b,
                         unsigned events, int *other)
{
    struct selector_event first;
    *other = -1;
    if (!make_pair(a) || !make_pair(b) || !put_byte(a[1]) || !put_byte(b[1]))
        return false;
    if (selector_register(sel, a[0], events, data_a) < 0 ||
        selector_register(sel, b[0], events, data_b) < 0) {
        fail(0, "selector_register: %s", errno_name(errno));
        return false;
    }
    int ready = selector_select(sel, 0);
    if (ready != 2) {
        fail(0, "two ready sockets: selector_select() returned %d", ready);
        return false;
    }
    if (!selector_next(sel, &first)) {
        fail(0, "selector_next() gave nothing from a batch of 2");
        return false;
    }
    *other = first.key.fd == a[0] ? b[0] : a[0];
    return true;
}

/* Within one batch, a key unregistered by an earlier callback is not
 * dispatched. */
static void test_batch_unregister(const char *backend)
{
    struct selector *sel;
    struct selector_event event;
    int a[2], b[2], data_a, data_b, other;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(batch_of_two(sel, a, b, &data_a, &data_b, SELECTOR_READ, &other));
    CHECK_OK(selector_unregister(sel, other));
    CHECK(!selector_next(sel, &event), "selector_next() gave fd %d, unregistered in this batch",
          event.key.fd);
}

/* An event of an old descriptor never reaches a new key that reuses its
 * number in the same batch: the callback of the first event closes the
 * other socket (unregister, close) and accepts a new one that gets the
 * same number, registered for READ with new data. The old socket's READ
 * is still in the batch; the new socket has nothing to read. */
static void test_batch_reuse(const char *backend)
{
    struct selector *sel;
    struct selector_event event;
    int a[2], b[2], c[2], data_a, data_b, data_c, other;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(batch_of_two(sel, a, b, &data_a, &data_b, SELECTOR_READ, &other));
    CHECK_OK(selector_unregister(sel, other));
    REQUIRE(make_pair(c));
    REQUIRE(move_fd(&c[0], other)); /* closes the old socket, reuses its number */
    CHECK_OK(selector_register(sel, other, SELECTOR_READ, &data_c));
    CHECK(!selector_next(sel, &event),
          "selector_next() gave fd %d (%s data) READ: the old socket's event reached the new key",
          event.key.fd, event.key.data == &data_c ? "the new key's" : "some");
}

/* A modify() within a batch is seen by the rest of the batch: the other
 * socket, changed from READ|WRITE to WRITE with new data, is handed out
 * with WRITE only and the new data. */
static void test_batch_modify(const char *backend)
{
    struct selector *sel;
    struct selector_event event;
    int a[2], b[2], data_a, data_b, data_new, other;
    char buf[32];
    REQUIRE(sel = open_selector(backend));
    REQUIRE(batch_of_two(sel, a, b, &data_a, &data_b, SELECTOR_READ | SELECTOR_WRITE, &other));
    CHECK_OK(selector_modify(sel, other, SELECTOR_WRITE, &data_new));
    CHECK(selector_next(sel, &event), "selector_next() dropped fd %d, still writable", other);
    CHECK(event.key.fd == other && event.events == SELECTOR_WRITE && event.key.data == &data_new,
          "selector_next() gave fd %d %s%s; expected fd %d WRITE with the new data", event.key.fd,
          events_name(event.events, buf), event.key.data == &data_new ? "" : " with old data",
          other);
    CHECK(!selector_next(sel, &event), "a third event (fd %d) in a batch of two", event.key.fd);
}

/* A modify() within a batch that turns off every event the other socket
 * was ready for (READ, to WRITE) leaves nothing of it: it is skipped. */
static void test_batch_modify_all_off(const char *backend)
{
    struct selector *sel;
    struct selector_event event;
    int a[2], b[2], data_a, data_b, other;
    char buf[32];
    REQUIRE(sel = open_selector(backend));
    REQUIRE(batch_of_two(sel, a, b, &data_a, &data_b, SELECTOR_READ, &other));
    CHECK_OK(selector_modify(sel, other, SELECTOR_WRITE, &data_b));
    CHECK(!selector_next(sel, &event),
          "selector_next() gave fd %d %s; its READ was turned off in this batch", event.key.fd,
          events_name(event.events, buf));
}

/* A modify() within a batch that widens the other socket's key, from
 * READ to READ|WRITE (it is both readable and writable), gets only what
 * the wait found, READ; WRITE comes at the next wait. */
static void test_batch_widen(const char *backend)
{
    struct selector *sel;
    struct selector_event event;
    int a[2], b[2], data_a, data_b, data_new, other;
    char buf[32];
    REQUIRE(sel = open_selector(backend));
    REQUIRE(batch_of_two(sel, a, b, &data_a, &data_b, SELECTOR_READ, &other));
    CHECK_OK(selector_modify(sel, other, SELECTOR_READ | SELECTOR_WRITE, &data_new));
    CHECK(selector_next(sel, &event), "selector_next() dropped fd %d, widened in this batch",
          other);
    CHECK(event.key.fd == other && event.events == SELECTOR_READ && event.key.data == &data_new,
          "selector_next() gave fd %d %s; expected fd %d READ (what the wait found) with the new "
          "data", event.key.fd, events_name(event.events, buf), other);
    CHECK(!selector_next(sel, &event), "a third event (fd %d) in a batch of two", event.key.fd);
    struct want next[] = {
        {a[0], SELECTOR_READ, &data_a},
        {b[0], SELECTOR_READ, &data_b},
    };
    next[other == a[0] ? 0 : 1] = (struct want){other, SELECTOR_READ | SELECTOR_WRITE, &data_new};
    REQUIRE(batch_is(sel, 0, next, 2));
}

/* Unregister finds a descriptor's event in the batch by where the last
 * wait put it. That place may be left over from an older batch, where it
 * now holds another descriptor's event, which must survive. Batch 1 has
 * X first, then Y; batch 2 has Y alone, in X's old place; a callback
 * unregisters X: Y is still handed out. */
static void test_batch_stale_place(const char *backend)
{
    struct selector *sel;
    struct selector_event event;
    int a[2], b[2], data_a, data_b, y;
    REQUIRE(sel = open_selector(backend));
    REQUIRE(batch_of_two(sel, a, b, &data_a, &data_b, SELECTOR_READ, &y));
    int x = y == a[0] ? b[0] : a[0]; /* handed out first: the batch's first place */
    REQUIRE(take_byte(x));
    CHECK(selector_select(sel, 0) == 1, "with one socket readable, the batch is not of 1");
    CHECK_OK(selector_unregister(sel, x));
    CHECK(selector_next(sel, &event) && event.key.fd == y,
          "fd %d was dropped from the batch when fd %d, once in its place, was unregistered", y,
          x);
}

/* Many callbacks of one batch change the table: 60 sockets are ready; the
 * first one handed out unregisters two in three of the others, and closes
 * every third of those and gives its number to a new socket, readable
 * but not in this batch; each socket handed out then unregisters itself.
 * Exactly the first and the untouched third are handed out, each once,
 * with its own key, and no new socket. Three rounds on the same numbers,
 * so that places left from the batch before are there to mislead. */
static void test_batch_many_changes(const char *backend)
{
    enum { PAIRS = 60, ROUNDS = 3 };
    static int pairs[PAIRS][2], fresh[PAIRS][2], tags[PAIRS];
    static int fresh_tag;
    static bool seen[PAIRS];
    struct selector *sel;
    struct selector_event event;
    REQUIRE(sel = open_selector(backend));
    for (int round = 1; round <= ROUNDS; round++) {
        snprintf(context, sizeof context, "round %d", round);
        for (int i = 0; i < PAIRS; i++) {
            REQUIRE(make_pair(pairs[i]));
            REQUIRE(put_byte(pairs[i][1]));
            CHECK_OK(selector_register(sel, pairs[i][0], SELECTOR_READ, &tags[i]));
            seen[i] = false;
            fresh[i][0] = fresh[i][1] = -1;
        }
        int ready = selector_select(sel, 0);
        CHECK(ready == PAIRS, "selector_select() found %d of %d ready", ready, PAIRS);
        int first = -1, handed = 0;
        while (selector_next(sel, &event)) {
            CHECK(event.key.data != &fresh_tag, "a new socket on fd %d got an old event",
                  event.key.fd);
            int i = (int)((int *)event.key.data - tags);
            CHECK(i >= 0 && i < PAIRS && event.key.fd == pairs[i][0],
                  "fd %d handed out with another key's data", event.key.fd);
            CHECK(!seen[i], "fd %d handed out twice", event.key.fd);
            CHECK(first == -1 || i % 3 == 0, "fd %d handed out, unregistered in this batch",
                  event.key.fd);
            seen[i] = true;
            handed++;
            for (int k = 0; first == -1 && k < PAIRS; k++) {
                if (k == i || k % 3 == 0)
                    continue;
                int number = pairs[k][0];
                CHECK_OK(selector_unregister(sel, number));
                if (k % 3 == 2) {
                    REQUIRE(make_pair(fresh[k]));
                    REQUIRE(move_fd(&fresh[k][0], number)); /* closes the old socket */
                    pairs[k][0] = -1;
                    REQUIRE(put_byte(fresh[k][1]));
                    CHECK_OK(selector_register(sel, number, SELECTOR_READ, &fresh_tag));
                }
            }
            if (first == -1)
                first = i;
            CHECK_OK(selector_unregister(sel, event.key.fd));
        }
        int expected = (PAIRS + 2) / 3 + (first % 3 != 0);
        CHECK(handed == expected, "%d handed out, expected %d", handed, expected);
        for (int i = 0; i < PAIRS; i++) {
            if (fresh[i][0] >= 0) {
                CHECK_OK(selector_unregister(sel, fresh[i][0]));
                close_fd(fresh[i][0]);
                close_fd(fresh[i][1]);
            }
            if (pairs[i][0] >= 0)
                close_fd(pairs[i][0]);
            close_fd(pairs[i][1]);
        }
    }
}

/* FD_SETSIZE is as far as select() can watch: the select backend takes
 * FD_SETSIZE - 1 and refuses FD_SETSIZE with ERANGE, registering
 * nothing. poll and epoll take both, and report both. */
static void test_fd_setsize(const char *backend)
{
    struct selector *sel;
    int sv[2], low_data, high_data;
    if (fd_limit() <= FD_SETSIZE) {
        skip("RLIMIT_NOFILE is %ld: descriptor %d cannot be opened", fd_limit(), FD_SETSIZE);
        return;
    }
    REQUIRE(sel = open_selector(backend));
    REQUIRE(make_pair(sv));
    REQUIRE(put_byte(sv[1]));
    int low = sv[0], high;
    REQUIRE(move_fd(&low, FD_SETSIZE - 1));
    if (dup2(low, FD_SETSIZE) < 0) {
        skip("dup2 to %d: %s", FD_SETSIZE, errno_name(errno));
        return;
    }
    REQUIRE(track(high = FD_SETSIZE));
    CHECK_OK(selector_register(sel, low, SELECTOR_READ, &low_data));
    struct want both[] = {{low, SELECTOR_READ, &low_data}, {high, SELECTOR_READ, &high_data}};
    if (strcmp(backend, "select") == 0) {
        CHECK_ERROR(selector_register(sel, high, SELECTOR_READ, &high_data), ERANGE);
        REQUIRE(not_registered(sel, high));
        REQUIRE(batch_is(sel, 0, both, 1));
    } else {
        CHECK_OK(selector_register(sel, high, SELECTOR_READ, &high_data));
        REQUIRE(batch_is(sel, 0, both, 2));
    }
}

/* Many descriptors ready at once are all reported, each once, with its
 * own key: select and poll (which scan every descriptor) in one batch;
 * epoll, which may hand out fewer at a time, over a few batches. PAIRS
 * socketpairs: one end registered for READ (its peer wrote a byte), the
 * other for WRITE. */
#define MANY_PAIRS 1100
static int many_fds[2 * MANY_PAIRS];
static int many_index[FD_TABLE];     /* where each descriptor is in many_fds */
static unsigned char many_seen[FD_TABLE]; /* the batch in which it was reported */

static void many_ready(const char *backend, int pairs, bool above_fd_setsize)
{
    enum { MAX_BATCHES = 100 };
    struct selector *sel;
    struct selector_event event;
    char buf[32];
    int count = 2 * pairs;
    if (fd_limit() < count + 32) {
        skip("RLIMIT_NOFILE is %ld; %d socketpairs need %d descriptors", fd_limit(), pairs,
             count + 32);
        return;
    }
    REQUIRE(sel = open_selector(backend));
    /* A server starts with few descriptors and grows: wait once before
     * the many arrive, so that the batch must grow with them. */
    REQUIRE(batch_is_empty(sel, 0));
    for (int i = 0; i < count; i += 2) {
        REQUIRE(make_pair(&many_fds[i]));
        REQUIRE(put_byte(many_fds[i + 1]));
        for (int j = i; j < i + 2; j++) {
            many_index[many_fds[j]] = j;
            many_seen[many_fds[j]] = 0;
            unsigned events = j == i ? SELECTOR_READ : SELECTOR_WRITE;
            CHECK_OK(selector_register(sel, many_fds[j], events, &many_fds[j]));
        }
    }
    int highest = many_fds[count - 1] > many_fds[count - 2] ? many_fds[count - 1] : many_fds[count - 2];
    CHECK(above_fd_setsize == (highest >= FD_SETSIZE), "descriptors went up to %d", highest);

    bool one_batch = strcmp(backend, "epoll") != 0;
    int reported = 0, batches = 0;
    while (reported < count && batches < (one_batch ? 1 : MAX_BATCHES)) {
        batches++;
        int ready = selector_select(sel, 0);
        CHECK(ready > 0, "batch %d: selector_select(0) returned %d (%s), %d of %d reported",
              batches, ready, errno_name(errno), reported, count);
        while (selector_next(sel, &event)) {
            int fd = event.key.fd, index = many_index[fd];
            unsigned want = index % 2 == 0 ? SELECTOR_READ : SELECTOR_WRITE;
            CHECK(event.key.data == &many_fds[index] && event.events == want,
                  "fd %d: got %s with the data of another key", fd,
                  events_name(event.events, buf));
            CHECK(many_seen[fd] != batches, "fd %d twice in batch %d", fd, batches);
            reported += many_seen[fd] == 0;
            many_seen[fd] = (unsigned char)batches;
        }
    }
    CHECK(reported == count, "%d of %d ready descriptors reported in %d batch(es)", reported,
          count, batches);
    note("# %s: %d ready descriptors, up to fd %d, in %d batch%s\n", backend, count, highest,
         batches, batches == 1 ? "" : "es");
}

static void test_many_ready(const char *backend)
{
    many_ready(backend, (FD_SETSIZE - 64) / 2, false);
}

/* poll and epoll watch more than FD_SETSIZE descriptors, numbered
 * beyond it; select cannot (see the FD_SETSIZE case). */
static void test_beyond_fd_setsize(const char *backend)
{
    if (strcmp(backend, "select") == 0) {
        skip("select watches only descriptors below FD_SETSIZE (%d)", FD_SETSIZE);
        return;
    }
    many_ready(backend, MANY_PAIRS, true);
}

/* selector_close() releases what the selector holds -- its memory (the
 * leak check at exit, under SANITIZE=1), and the backend's descriptor
 * (epoll's): opening and closing many leaves the count of open
 * descriptors as it was -- and leaves the registered descriptors open:
 * they are the program's. */
static void test_close(const char *backend)
{
    struct selector *sel;
    int sv[2], far, data;
    int before = count_open_fds();
    for (int i = 0; i < 50; i++) {
        REQUIRE(sel = open_selector(backend));
        close_selector(sel);
    }
    int after = count_open_fds();
    CHECK(after == before, "%d descriptors open before 50 selector_open/close, %d after", before,
          after);

    REQUIRE(sel = open_selector(backend));
    REQUIRE(make_pair(sv));
    far = sv[1];
    REQUIRE(move_fd(&far, 300)); /* a table that has grown */
    CHECK_OK(selector_register(sel, sv[0], SELECTOR_READ, &data));
    CHECK_OK(selector_register(sel, far, SELECTOR_READ | SELECTOR_WRITE, &data));
    struct want writable[] = {{far, SELECTOR_WRITE, &data}};
    REQUIRE(batch_is(sel, 0, writable, 1));
    close_selector(sel);
    CHECK(is_open(sv[0]) && is_open(far), "selector_close() closed a registered descriptor");
    selector_close(NULL); /* ignored */
}

/* Two selectors share nothing: a key in one is not in the other. */
static void test_two_selectors(const char *backend)
{
    struct selector *one, *two;
    int sv[2], data_one, data_two;
    REQUIRE(one = open_selector(backend));
    REQUIRE(two = open_selector(backend));
    REQUIRE(make_pair(sv));
    REQUIRE(put_byte(sv[1]));
    CHECK_OK(selector_register(one, sv[0], SELECTOR_READ, &data_one));
    REQUIRE(not_registered(two, sv[0]));
    REQUIRE(batch_is_empty(two, 0));
    CHECK_OK(selector_register(two, sv[0], SELECTOR_WRITE, &data_two));
    struct want in_one[] = {{sv[0], SELECTOR_READ, &data_one}};
    struct want in_two[] = {{sv[0], SELECTOR_WRITE, &data_two}};
    REQUIRE(batch_is(one, 0, in_one, 1));
    REQUIRE(batch_is(two, 0, in_two, 1));
    CHECK_OK(selector_unregister(one, sv[0]));
    REQUIRE(batch_is(two, 0, in_two, 1));
}

/* Hundreds of register/modify/unregister calls in a fixed pseudo-random
 * order, and whether each socket is readable, against a model of what
 * the selector must hold: after every step, get_key and a batch must
 * agree with the model. */
static void test_against_model(const char *backend)
{
    enum { PAIRS = 10, STEPS = 500, TAGS = 16 };
    static const char *const ops[] = {"register", "modify", "unregister", "read/write"};
    struct {
        int sv[2];
        bool registered, readable;
        unsigned events;
        void *data;
    } model[PAIRS];
    static char tag[TAGS];
    unsigned long seed = 2024;
    struct selector *sel;
    REQUIRE(sel = open_selector(backend));
    for (int i = 0; i < PAIRS; i++) {
        REQUIRE(make_pair(model[i].sv));
        model[i].registered = model[i].readable = false;
    }
    for (int step = 1; step <= STEPS; step++) {
        seed = seed * 1103515245 + 12345; /* the classic rand(): same on every system */
        unsigned r = (unsigned)(seed >> 16);
        int op = (int)(r % 4);
        int i = (int)(r / 4 % PAIRS);
        unsigned events = 1 + r / 40 % 3;
        void *data = &tag[r / 120 % TAGS];
        int fd = model[i].sv[0];
        snprintf(context, sizeof context, "step %d: %s of fd %d", step, ops[op], fd);
        if (op == 0 && model[i].registered) {
            CHECK_ERROR(selector_register(sel, fd, events, data), EEXIST);
        } else if (op == 0) {
            CHECK_OK(selector_register(sel, fd, events, data));
            model[i].registered = true;
            model[i].events = events;
            model[i].data = data;
        } else if (op == 1 && model[i].registered) {
            CHECK_OK(selector_modify(sel, fd, events, data));
            model[i].events = events;
            model[i].data = data;
        } else if (op == 2 && model[i].registered) {
            CHECK_OK(selector_unregister(sel, fd));
            model[i].registered = false;
        } else if (op == 1) {
            CHECK_ERROR(selector_modify(sel, fd, events, data), ENOENT);
        } else if (op == 2) {
            CHECK_ERROR(selector_unregister(sel, fd), ENOENT);
        } else {
            REQUIRE(model[i].readable ? take_byte(fd) : put_byte(model[i].sv[1]));
            model[i].readable = !model[i].readable;
        }

        struct want want[PAIRS];
        int count = 0;
        for (int j = 0; j < PAIRS; j++) {
            if (!model[j].registered) {
                REQUIRE(not_registered(sel, model[j].sv[0]));
                continue;
            }
            REQUIRE(key_is(sel, model[j].sv[0], model[j].events, model[j].data));
            unsigned ready = SELECTOR_WRITE | (model[j].readable ? SELECTOR_READ : 0);
            if ((model[j].events & ready) != 0)
                want[count++] = (struct want){model[j].sv[0], model[j].events & ready, model[j].data};
        }
        REQUIRE(batch_is(sel, 0, want, count));
    }
}

/* ---- Cases of the library as a whole --------------------------------- */

/* selector_backends() lists the backends best first (epoll, poll,
 * select: those compiled in), each once, and NULL past the last. */
static void test_backends_list(const char *unused)
{
    static const char *const best_first[] = {"epoll", "poll", "select"};
    int last_rank = -1, count = 0;
    bool has_poll = false, has_select = false;
    (void)unused;
    for (const char *name; (name = selector_backends(count)) != NULL; count++) {
        CHECK(count < 16, "selector_backends() never returns NULL");
        int rank = 0;
        while (rank < 3 && strcmp(name, best_first[rank]) != 0)
            rank++;
        if (rank == 3)
            continue; /* one this test does not know of: anywhere */
        CHECK(rank > last_rank, "\"%s\" is listed after \"%s\"", name, best_first[last_rank]);
        last_rank = rank;
        has_poll |= rank == 1;
        has_select |= rank == 2;
    }
    CHECK(has_poll && has_select, "select or poll missing from selector_backends()");
    CHECK(selector_backends(count + 1) == NULL, "selector_backends(%d) is not NULL", count + 1);
}

/* selector_open(NULL) opens the default: selector_backends(0). */
static void test_open_default(const char *unused)
{
    struct selector *sel;
    (void)unused;
    errno = 0;
    CHECK((sel = selector_open(NULL)) != NULL, "selector_open(NULL) failed: %s", errno_name(errno));
    const char *name = selector_name(sel), *first = selector_backends(0);
    bool same = first != NULL && strcmp(name, first) == 0;
    selector_close(sel);
    CHECK(same, "selector_open(NULL) runs \"%s\", selector_backends(0) is \"%s\"", name,
          first ? first : "(null)");
}

/* selector_open() of a name it does not know: NULL with EINVAL. */
static void test_open_unknown(const char *unused)
{
    static const char *const names[] = {"kqueue-or-such", "", "EPOLL"};
    (void)unused;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        errno = 0;
        struct selector *sel = selector_open(names[i]);
        int error = errno;
        selector_close(sel);
        CHECK(sel == NULL && error == EINVAL, "selector_open(\"%s\"): expected NULL with EINVAL, got %s",
              names[i], sel ? "a selector" : errno_name(error));
    }
}

/* ---- The harness ------------------------------------------------------ */

struct test_case {
    const char *name;
    void (*run)(const char *backend);
};

static const struct test_case library_cases[] = {
    {"selector_backends() lists select and poll, best first, NULL past the last",
     test_backends_list},
    {"selector_open(NULL) opens selector_backends(0)", test_open_default},
    {"selector_open() of an unknown name: NULL with EINVAL", test_open_unknown},
};

static const struct test_case backend_cases[] = {
    {"selector_open(name) runs it; selector_name() says it", test_open_by_name},
    {"events 0 or unknown bits: EINVAL, nothing registered or changed", test_invalid_events},
    {"negative fd: EBADF", test_negative_fd},
    {"register twice: EEXIST, the first key stays", test_register_twice},
    {"modify/unregister/get_key without a key: ENOENT", test_not_registered},
    {"register of a closed fd: EBADF, no key", test_register_closed_fd},
    {"register of fd INT_MAX: EBADF at once, no key", test_register_int_max},
    {"register the kernel refuses (epoll: a file, EPERM): no key", test_kernel_refuses},
    {"get_key copies out fd, events, data", test_get_key},
    {"modify changes events and data", test_modify},
    {"modify of data alone makes no system call", test_modify_data_alone},
    {"modify the kernel refuses leaves the key as it was", test_failed_modify},
    {"unregister: no more events, fd left as it was", test_unregister},
    {"removing and changing keys leaves the others as they were", test_several_keys},
    {"unregister after close; the reused number registers anew", test_unregister_after_close},
    {"unregister after the number was reused by a new socket", test_unregister_after_reuse},
    {"modify after a close without unregister and reuse: the key stays; unregister mends it",
     test_modify_after_reuse},
    {"register after a close of a copy without unregister: a new key, nothing of the batch",
     test_register_after_close_of_a_copy},
    {"a batch has only the events each key asked for", test_only_asked_events},
    {"a hang-up reaches a READ key as READ", test_hangup_read},
    {"a hang-up reaches a WRITE key as WRITE", test_hangup_write},
    {"a pipe reader's hang-up reaches a WRITE key on poll/epoll, not select",
     test_hangup_write_only_pipe_reader},
    {"timeout 0 returns 0 at once", test_timeout_zero},
    {"timeout N waits about N ms", test_timeout_waits},
    {"a long timeout returns at once when a fd is ready", test_long_timeout_ready},
    {"an empty selector waits out its timeout", test_empty_selector},
    {"a signal ends the wait: 0 events, not -1/EINTR", test_signal_ends_wait},
    {"same batch: a key unregistered by a callback is skipped", test_batch_unregister},
    {"same batch: an old fd's event never reaches a new key on its number", test_batch_reuse},
    {"same batch: modify's new events and data are seen", test_batch_modify},
    {"same batch: modify turning off all its ready events skips it", test_batch_modify_all_off},
    {"same batch: a key widened gets only what the wait found", test_batch_widen},
    {"same batch: unregister never drops the event now in its old place", test_batch_stale_place},
    {"same batch: 60 ready, many unregisters and reuses: exactly the rest handed out",
     test_batch_many_changes},
    {"fd FD_SETSIZE: select refuses it (ERANGE), poll/epoll take it", test_fd_setsize},
    {"many ready at once: all reported, each with its key", test_many_ready},
    {"more than FD_SETSIZE descriptors, all reported", test_beyond_fd_setsize},
    {"close releases the selector, leaves the fds open", test_close},
    {"two selectors share nothing", test_two_selectors},
    {"500 random register/modify/unregister steps agree with a model", test_against_model},
};

#define COUNT(array) ((int)(sizeof(array) / sizeof((array)[0])))

/* In the case's own process: runs it with its watchdog, closes what it
 * left open, and writes its result line (and notes) to RESULT_FD. */
static void run_case(int number, const char *prefix, const struct test_case *test,
                     const char *backend)
{
    char text[2048];
    watchdog_length = (size_t)snprintf(watchdog_line, sizeof watchdog_line,
                                       "not ok %d - %s: %s: hung (the watchdog fired after %d s)\n",
                                       number, prefix, test->name, WATCHDOG_SECONDS);
    if (watchdog_length >= sizeof watchdog_line)
        watchdog_length = sizeof watchdog_line - 1;
    arm_watchdog();
    test->run(backend);
    alarm(0);
    close_everything();

    int length;
    if (why[0] != '\0')
        length = snprintf(text, sizeof text, "not ok %d - %s: %s: selector_test.c:%d: %s\n", number,
                          prefix, test->name, why_line, why);
    else if (skip_reason[0] != '\0')
        length = snprintf(text, sizeof text, "ok %d - %s: %s # SKIP %s\n", number, prefix,
                          test->name, skip_reason);
    else
        length = snprintf(text, sizeof text, "ok %d - %s: %s\n", number, prefix, test->name);
    if (length >= (int)sizeof text)
        length = (int)sizeof text - 1;
    if (length + strlen(notes) < sizeof text)
        strcat(text, notes);
    ssize_t written = write(result_fd, text, strlen(text));
    (void)written;
}

static int passed, failed, skipped;

/* Runs one case in a process of its own, so that a case that hangs or
 * crashes fails alone, and the rest still run. The process ends with
 * exit(), so under SANITIZE=1 the leak check runs for each case: a leak
 * fails the case that made it. Prints the case's line. */
static void run(int number, const char *prefix, const struct test_case *test, const char *backend)
{
    char text[2048];
    size_t length = 0;
    int channel[2], status = 0;
    fflush(stdout);
    if (pipe(channel) < 0) {
        printf("not ok %d - %s: %s: pipe: %s\n", number, prefix, test->name, errno_name(errno));
        failed++;
        return;
    }
    pid_t child = fork();
    if (child == 0) {
        close(channel[0]);
        result_fd = channel[1];
        run_case(number, prefix, test, backend);
        exit(0);
    }
    close(channel[1]);
    for (ssize_t got = 1; child > 0 && got > 0 && length < sizeof text - 1; length += (size_t)got)
        got = read(channel[0], text + length, sizeof text - 1 - length);
    text[length] = '\0';
    close(channel[0]);
    if (child < 0 || waitpid(child, &status, 0) < 0) {
        printf("not ok %d - %s: %s: fork/waitpid: %s\n", number, prefix, test->name,
               errno_name(errno));
        failed++;
        return;
    }

    bool clean_exit = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (clean_exit || strncmp(text, "not ok", 6) == 0) {
        fputs(text, stdout);
    } else {
        /* It crashed, or a sanitizer failed it after it had passed. */
        char how[64];
        if (WIFSIGNALED(status))
            snprintf(how, sizeof how, "killed by signal %d", WTERMSIG(status));
        else
            snprintf(how, sizeof how, "exit status %d", WEXITSTATUS(status));
        printf("not ok %d - %s: %s: %s (%s; see stderr)\n", number, prefix, test->name, how,
               text[0] == '\0' ? "before it finished" : "after it finished");
    }
    if (!clean_exit || strncmp(text, "not ok", 6) == 0)
        failed++;
    else if (strstr(text, " # SKIP ") != NULL)
        skipped++;
    else
        passed++;
}

/* Raises the soft limit on descriptors to the hard one, as the servers
 * do: the cases with more than FD_SETSIZE descriptors need it. */
static void raise_fd_limit(void)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &limit) < 0) {
            limit.rlim_cur = 4 * MANY_PAIRS; /* macOS: the hard limit may be "infinity" */
            setrlimit(RLIMIT_NOFILE, &limit);
        }
    }
}

static bool known_backend(const char *name)
{
    for (int i = 0; selector_backends(i) != NULL; i++)
        if (strcmp(selector_backends(i), name) == 0)
            return true;
    return false;
}

int main(int argc, char **argv)
{
    const char *all[16];
    const char **backends = (const char **)argv + 1;
    int count = argc - 1;

    for (int i = 1; i < argc; i++) {
        if (!known_backend(argv[i])) {
            fprintf(stderr, "usage: selector_test [BACKEND...]\nbackends:");
            for (int j = 0; selector_backends(j) != NULL; j++)
                fprintf(stderr, " %s", selector_backends(j));
            fprintf(stderr, "\n");
            return 2;
        }
    }
    if (count == 0) {
        while (count < COUNT(all) && selector_backends(count) != NULL) {
            all[count] = selector_backends(count);
            count++;
        }
        backends = all;
    }

    struct sigaction action = {.sa_handler = on_alarm};
    sigemptyset(&action.sa_mask);
    sigaction(SIGALRM, &action, NULL);
    action.sa_handler = SIG_IGN; /* a write to a hung-up peer: EPIPE, not death */
    sigaction(SIGPIPE, &action, NULL);
    raise_fd_limit();

    int number = 0;
    printf("1..%d\n", COUNT(library_cases) + count * COUNT(backend_cases));
    for (int i = 0; i < COUNT(library_cases); i++)
        run(++number, "library", &library_cases[i], NULL);
    for (int b = 0; b < count; b++)
        for (int i = 0; i < COUNT(backend_cases); i++)
            run(++number, backends[b], &backend_cases[i], backends[b]);
    printf("# %d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed > 0;
}
