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

# The library as the chapter's Makefile builds it on Linux. The compiler
# speaks in the C locale, so that its messages can be summed up below.
COMPILE=("${CC:-cc}" -std=c11 -O2 -g -Wall -Wextra -Wpedantic -DHAVE_EPOLL -I"$COPY"
    -o "$TIMER_TEST" "$BATS_TEST_DIRNAME/timer_test.c"
    "$COPY"/selector.c "$COPY"/backend_select.c "$COPY"/backend_poll.c
    "$COPY"/backend_epoll.c)

setup_file() {
    LC_ALL=C "${COMPILE[@]}" >"$BATS_FILE_TMPDIR/compiler.out" 2>&1 || true
}

# What the compiler said, in a few lines: a copy without the timers yet
# would otherwise show a screenful of undeclared names, once per backend.
# The names timer_test.c uses that the copy does not declare, the first
# errors, and the command that shows all of it.
compiler_summary() {
    local out=$BATS_FILE_TMPDIR/compiler.out missing errors
    if [[ -e $BATS_FILE_TMPDIR/compiler.shown ]]; then
        echo "timer_test.c does not compile against your copy (the first test above says why)."
        return
    fi
    touch "$BATS_FILE_TMPDIR/compiler.shown"
    missing=$(grep -o "implicit declaration of function '[A-Za-z_0-9]*'\|undeclared [a-z]* '[A-Za-z_0-9]*'\|'[A-Za-z_0-9]*' undeclared" "$out" |
        grep -o "'[A-Za-z_0-9]*'" | tr -d "'" | sort -u | paste -sd ' ' -)
    errors=$(grep -c 'error:' "$out")
    echo "timer_test.c does not compile against your copy's selector.h and selector.c."
    [[ -z $missing ]] || echo "Not declared in your copy yet: $missing"
    echo "The compiler's first error (of $errors):"
    grep -m 1 'error:' "$out" | sed -e "s|$BATS_TEST_DIRNAME/||" -e "s|$COPY/||"
    echo "All its messages: ${CC:-cc} -std=c11 -Wall -Wextra -DHAVE_EPOLL -I$COPY -fsyntax-only $BATS_TEST_DIRNAME/timer_test.c"
}

# run_timer_test BACKEND: every case of timer_test.c on BACKEND.
run_timer_test() {
    if [[ ! -x $TIMER_TEST ]]; then
        compiler_summary
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
