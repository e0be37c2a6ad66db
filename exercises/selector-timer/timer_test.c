/*
 * timer_test.c: the check of the build exercise selector-timer
 * (exercises/selector-timer/exercise): the timers a learner adds to chapter
 * 05's selector, one rule a case, on one backend.
 *
 *   timer_test BACKEND
 *
 * check.bats compiles it against the learner's copy of the library and runs
 * it once per backend. The output is TAP, one line a case; the exit status
 * is 1 if any case failed. Each case stops at its first failed check. Every
 * wait is bounded: an alarm ends a case that hangs (and the program).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "selector.h"

enum {
    HANG_SECONDS = 10, /* a case still running after this has hung */
    LATE_MS = 1000,    /* how late a timer may fire on a busy machine */
    MANY = 10000,      /* timers in the case that sets many */
};

static const char *backend;
static struct selector *selector;
static char failure[512]; /* why the running case failed; empty: it has not */

static void fail(int line, const char *format, ...)
{
    if (failure[0] != '\0')
        return;
    int used = snprintf(failure, sizeof failure, "timer_test.c:%d: ", line);
    va_list args;
    va_start(args, format);
    vsnprintf(failure + used, sizeof failure - (size_t)used, format, args);
    va_end(args);
}

/* CHECK(condition, "why", ...): fails the case and leaves it if false. */
#define CHECK(condition, ...)                                                   \
    do {                                                                        \
        if (!(condition)) {                                                     \
            fail(__LINE__, __VA_ARGS__);                                        \
            return;                                                             \
        }                                                                       \
    } while (0)

static double now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec * 1000.0 + now.tv_nsec / 1e6;
}

/* Waits for the next batch: selector_select() with TIMEOUT_MS, again while
 * it returns 0 for a wait -1 (a wake-up before anything was due). Returns
 * what it returned last. */
static int next_batch(int timeout_ms)
{
    int ready;
    do
        ready = selector_select(selector, timeout_ms);
    while (ready == 0 && timeout_ms < 0);
    return ready;
}

/* Takes the batch: how many events, into EVENTS (at most MAX). */
static int take(struct selector_event *events, int max)
{
    int count = 0;
    struct selector_event event;
    while (selector_next(selector, &event)) {
        if (count < max)
            events[count] = event;
        count++;
    }
    return count;
}

static bool is_timer(const struct selector_event *event, void *data)
{
    return event->key.fd == -1 && event->events == SELECTOR_TIMER &&
           event->key.events == SELECTOR_TIMER && event->key.data == data;
}

/* ---- The cases ------------------------------------------------------------ */

static int a, b, c; /* their addresses are the timers' data */

static void fires_once_when_due(void)
{
    double start = now_ms();
    CHECK(selector_add_timer(selector, 100, &a) >= 0, "selector_add_timer: %s", strerror(errno));
    int ready = next_batch(-1);
    double waited = now_ms() - start;
    struct selector_event events[4];
    CHECK(ready == 1, "selector_select returned %d, expected 1 (the timer)", ready);
    CHECK(waited >= 99.5, "the timer fired after %.1f ms, before its 100", waited);
    CHECK(waited < 100 + LATE_MS, "the timer fired after %.0f ms, not 100", waited);
    CHECK(take(events, 4) == 1, "not one event in the batch");
    CHECK(is_timer(&events[0], &a), "the event is not the timer: fd %d, events %u",
          events[0].key.fd, events[0].events);
    CHECK(selector_select(selector, 150) == 0, "the timer fired a second time");
    CHECK(take(events, 4) == 0, "an event after the timer fired");
}

static void does_not_cut_a_wait_short(void)
{
    CHECK(selector_add_timer(selector, 300, &a) >= 0, "selector_add_timer: %s", strerror(errno));
    double start = now_ms();
    int ready = selector_select(selector, 50);
    double waited = now_ms() - start;
    CHECK(ready == 0, "selector_select(50) returned %d before the timer was due", ready);
    CHECK(waited >= 49 && waited < 50 + LATE_MS, "selector_select(50) took %.0f ms", waited);
    ready = next_batch(-1);
    waited = now_ms() - start;
    CHECK(ready == 1 && waited >= 299.5, "the timer fired after %.1f ms, expected 300", waited);
}

/* A wait that ends just before the deadline: whatever it finds, the timer
 * must not be among it unless its 100 ms have passed. */
static void never_early(void)
{
    double start = now_ms();
    CHECK(selector_add_timer(selector, 100, &a) >= 0, "selector_add_timer: %s", strerror(errno));
    struct selector_event events[4];
    static const int waits_ms[] = {99, 0};
    for (int i = 0; i < 2; i++) {
        int ready = selector_select(selector, waits_ms[i]);
        double waited = now_ms() - start;
        CHECK(ready >= 0, "selector_select: %s", strerror(errno));
        if (take(events, 4) > 0) {
            CHECK(waited >= 99.9, "the timer fired after %.2f ms, before its 100", waited);
            return;
        }
    }
    CHECK(next_batch(-1) == 1 && take(events, 4) == 1, "the timer never fired");
    CHECK(now_ms() - start >= 99.9, "the timer fired before its 100 ms");
}

static void fire_in_order_of_their_deadlines(void)
{
    CHECK(selector_add_timer(selector, 240, &c) >= 0, "selector_add_timer: %s", strerror(errno));
    CHECK(selector_add_timer(selector, 80, &a) >= 0, "selector_add_timer: %s", strerror(errno));
    CHECK(selector_add_timer(selector, 160, &b) >= 0, "selector_add_timer: %s", strerror(errno));
    void *order[] = {&a, &b, &c};
    struct selector_event events[4];
    for (int i = 0; i < 3; i++) {
        CHECK(next_batch(-1) == 1, "wake-up %d: not one event", i + 1);
        CHECK(take(events, 4) == 1 && is_timer(&events[0], order[i]),
              "wake-up %d: not the timer due %d-th", i + 1, i + 1);
    }
}

static void due_together_come_together(void)
{
    CHECK(selector_add_timer(selector, 20, &a) >= 0, "selector_add_timer: %s", strerror(errno));
    CHECK(selector_add_timer(selector, 0, &b) >= 0, "selector_add_timer: %s", strerror(errno));
    CHECK(selector_add_timer(selector, 10, &c) >= 0, "selector_add_timer: %s", strerror(errno));
    struct timespec pause = {0, 40 * 1000000L}; /* all three due by now */
    nanosleep(&pause, NULL);
    struct selector_event events[4];
    int ready = selector_select(selector, 0);
    CHECK(ready == 3, "selector_select returned %d, expected the 3 timers due", ready);
    CHECK(take(events, 4) == 3, "not 3 events in the batch");
    CHECK(is_timer(&events[0], &b) && is_timer(&events[1], &c) && is_timer(&events[2], &a),
          "the batch is not in order of the deadlines");
}

static void a_cancelled_timer_never_fires(void)
{
    int first = selector_add_timer(selector, 50, &a);
    int second = selector_add_timer(selector, 100, &b);
    CHECK(first >= 0 && second >= 0 && first != second, "ids %d and %d", first, second);
    CHECK(selector_cancel_timer(selector, first) == 0, "selector_cancel_timer: %s", strerror(errno));
    struct selector_event events[4];
    CHECK(next_batch(-1) == 1 && take(events, 4) == 1 && is_timer(&events[0], &b),
          "the first event is not the timer left");
    errno = 0;
    CHECK(selector_cancel_timer(selector, first) == -1 && errno == ENOENT,
          "cancelling a cancelled timer: not -1 with ENOENT");
    errno = 0;
    CHECK(selector_cancel_timer(selector, second) == -1 && errno == ENOENT,
          "cancelling a timer that fired: not -1 with ENOENT");
    CHECK(selector_select(selector, 100) == 0 && take(events, 4) == 0,
          "an event after both timers are gone");
}

static void cancelled_within_the_batch(void)
{
    int first = selector_add_timer(selector, 0, &a);
    int second = selector_add_timer(selector, 0, &b);
    CHECK(first >= 0 && second >= 0, "selector_add_timer: %s", strerror(errno));
    CHECK(selector_select(selector, 0) == 2, "the two timers due are not in the batch");
    struct selector_event event;
    CHECK(selector_next(selector, &event) && is_timer(&event, &a), "the first is not the first");
    /* The first's callback cancels the second, which the batch holds. */
    CHECK(selector_cancel_timer(selector, second) == 0, "selector_cancel_timer: %s", strerror(errno));
    CHECK(!selector_next(selector, &event), "a timer cancelled in the batch still came");
}

static void beside_descriptors(void)
{
    int ends[2];
    CHECK(pipe(ends) == 0, "pipe: %s", strerror(errno));
    bool ok = write(ends[1], "x", 1) == 1 &&
              selector_register(selector, ends[0], SELECTOR_READ, &c) == 0 &&
              selector_add_timer(selector, 0, &a) >= 0;
    struct selector_event events[4];
    int ready = ok ? selector_select(selector, 100) : -1;
    int got = take(events, 4);
    selector_unregister(selector, ends[0]);
    close(ends[0]);
    close(ends[1]);
    CHECK(ok, "register, add_timer or write failed: %s", strerror(errno));
    CHECK(ready == 2 && got == 2, "a readable pipe and a timer due: %d events, expected 2", got);
    bool pipe_seen = false, timer_seen = false;
    for (int i = 0; i < 2; i++) {
        pipe_seen |= events[i].key.fd == ends[0] && events[i].events == SELECTOR_READ;
        timer_seen |= is_timer(&events[i], &a);
    }
    CHECK(pipe_seen && timer_seen, "the batch lacks the pipe or the timer");
}

static void a_negative_delay_is_refused(void)
{
    errno = 0;
    CHECK(selector_add_timer(selector, -1, &a) == -1 && errno == EINVAL,
          "selector_add_timer(-1): not -1 with EINVAL");
    errno = 0;
    CHECK(selector_cancel_timer(selector, 12345) == -1 && errno == ENOENT,
          "cancelling a timer never set: not -1 with ENOENT");
}

static int fired[MANY];

static void many_each_once_in_order(void)
{
    int data[MANY];
    srand(7);
    double start = now_ms();
    for (int i = 0; i < MANY; i++) {
        data[i] = i;
        fired[i] = 0;
        CHECK(selector_add_timer(selector, rand() % 300, &data[i]) >= 0,
              "timer %d: selector_add_timer: %s", i, strerror(errno));
    }
    int count = 0;
    while (count < MANY && now_ms() - start < 300 + 5 * LATE_MS) {
        if (next_batch(100) < 0)
            break;
        struct selector_event event;
        while (selector_next(selector, &event)) {
            int *which = event.key.data;
            CHECK(event.key.fd == -1 && which >= data && which < data + MANY,
                  "an event that is none of the timers");
            fired[*which]++;
            count++;
        }
    }
    int once = 0;
    for (int i = 0; i < MANY; i++)
        once += fired[i] == 1;
    CHECK(once == MANY, "%d of %d timers fired exactly once", once, MANY);
}

/* ---- The harness ---------------------------------------------------------- */

static void on_hang(int signal_number)
{
    (void)signal_number;
    static const char message[] = "not ok - a case hung: no answer in 10 s\n";
    (void)!write(STDOUT_FILENO, message, sizeof message - 1);
    _exit(1);
}

int main(int argc, char **argv)
{
    static const struct {
        void (*run)(void);
        const char *name;
    } cases[] = {
        {fires_once_when_due, "a timer fires once, when it is due"},
        {does_not_cut_a_wait_short, "a wait shorter than the timer ends on time, with 0"},
        {never_early, "a wait that ends just before the deadline does not fire the timer"},
        {fire_in_order_of_their_deadlines, "timers fire in the order of their deadlines"},
        {due_together_come_together, "timers due together come in one batch, earliest first"},
        {a_cancelled_timer_never_fires, "a cancelled timer never fires; cancel twice: ENOENT"},
        {cancelled_within_the_batch, "a timer cancelled while its batch is handed out does not come"},
        {beside_descriptors, "timers and descriptors come in the same batch"},
        {a_negative_delay_is_refused, "a negative delay: EINVAL"},
        {many_each_once_in_order, "10,000 timers: each fires exactly once"},
    };
    if (argc != 2) {
        fprintf(stderr, "usage: timer_test BACKEND\n");
        return 2;
    }
    backend = argv[1];
    signal(SIGALRM, on_hang);
    int failed = 0, number = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        failure[0] = '\0';
        selector = selector_open(backend);
        if (selector == NULL) {
            fprintf(stderr, "selector_open %s: %s\n", backend, strerror(errno));
            return 1;
        }
        alarm(HANG_SECONDS);
        cases[i].run();
        alarm(0);
        selector_close(selector);
        number++;
        if (failure[0] == '\0') {
            printf("ok %d - %s: %s\n", number, backend, cases[i].name);
        } else {
            failed++;
            printf("not ok %d - %s: %s: %s\n", number, backend, cases[i].name, failure);
        }
        fflush(stdout);
    }
    printf("# %d passed, %d failed\n", number - failed, failed);
    return failed > 0;
}
