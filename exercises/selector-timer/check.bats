#!/usr/bin/env bats
# Build exercise: timers on chapter 05's selector (exercises/README.md).
# `make check EX=selector-timer` runs it against the learner's copy:
# timer_test.c, compiled against the copy's library, on every backend; then
# the copy's own selector_test, and (its Tests: line) some of the chapter's
# tests against the copy's echo server.

CHAPTER=05-selector-abstraction
load ../helpers
load ../../tests/contract

COPY=$(dirname "$SERVER")
TIMER_TEST=$BATS_FILE_TMPDIR/timer_test

# The library as the chapter's Makefile builds it on Linux.
setup_file() {
    "${CC:-cc}" -std=c11 -O2 -g -Wall -Wextra -Wpedantic -DHAVE_EPOLL -I"$COPY" \
        -o "$TIMER_TEST" "$BATS_TEST_DIRNAME/timer_test.c" \
        "$COPY"/selector.c "$COPY"/backend_select.c "$COPY"/backend_poll.c \
        "$COPY"/backend_epoll.c >"$BATS_FILE_TMPDIR/compiler.out" 2>&1 || true
}

# run_timer_test BACKEND: every case of timer_test.c on BACKEND.
run_timer_test() {
    if [[ ! -x $TIMER_TEST ]]; then
        echo "timer_test.c does not compile against your selector.h and selector.c:"
        cat "$BATS_FILE_TMPDIR/compiler.out"
        return 1
    fi
    run timeout 60 "$TIMER_TEST" "$1"
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "timers on select" { run_timer_test select; }
@test "timers on poll" { run_timer_test poll; }
@test "timers on epoll" { run_timer_test epoll; }

# The library's own tests, your copy's selector_test: timers must break
# nothing.
@test "library: every case of selector_test on select" { check_selector_library select; }
@test "library: every case of selector_test on poll" { check_selector_library poll; }
@test "library: every case of selector_test on epoll" { check_selector_library epoll; }
