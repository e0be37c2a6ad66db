#!/usr/bin/env bats
# Build exercise: a TCP forwarder on chapter 05's selector
# (exercises/README.md). `make check EX=tcp-forwarder` runs it against the
# learner's copy: the forwarder, in front of the copy's echo server, must
# keep the echo server's contract (tests/contract.bash) as a pair.

CHAPTER=05-selector-abstraction
load ../helpers
load ../../tests/contract

FORWARDER=$(dirname "$SERVER")/forwarder

# The chapter's teardown, and every echo server started behind a forwarder
# (a test may start the pair more than once).
TARGET_PIDS=()
eval "chapter_teardown() $(declare -f teardown | tail -n +2)"
teardown() {
    local pid
    for pid in "${TARGET_PIDS[@]}"; do
        kill -s KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    chapter_teardown
}

# start_target: the echo server, quiet, on a free port: TARGET_PORT.
start_target() {
    mkdir -p "$BATS_TEST_TMPDIR/target"
    BATS_TEST_TMPDIR=$BATS_TEST_TMPDIR/target launch_server "$SERVER" -q -p 0
    TARGET_PID=$SERVER_PID
    TARGET_PIDS+=("$TARGET_PID")
    TARGET_PORT=$SERVER_PORT
    SERVER_PID=
}

# What the contract's tests start: the forwarder, in front of the echo
# server. To them the pair is "the server".
start_server() {
    [[ -x $FORWARDER ]] || {
        echo "no $FORWARDER: does make build it?"
        return 1
    }
    start_target
    launch_server "$FORWARDER" -p 0 "$@" 127.0.0.1 "$TARGET_PORT"
}

@test "make builds forwarder" {
    [ -x "$FORWARDER" ]
}

@test "usage errors (no target among them): exit 2 with the usage on stderr" {
    local args
    for args in "" "127.0.0.1" "-x 127.0.0.1 7" "-p 70000 127.0.0.1 7" "127.0.0.1 7 extra"; do
        run --separate-stderr timeout "$WAIT_SECONDS" bash -c "exec \"\$0\" $args" "$FORWARDER"
        echo "forwarder $args: status $status"
        [ "$status" -eq 2 ]
        [[ $stderr == *"usage: forwarder"* ]]
    done
}

@test "relays a line, both ways" { check_echoes_a_line; }
@test "relays every byte value" { check_echoes_every_byte_value; }
@test "relays exactly however the client splits its writes" { check_echoes_random_splits; }
@test "half-close, passed on both ways: everything comes back, then end-of-file" { check_half_close_gets_everything_back; }
@test "survives a client's reset" { check_survives_reset; }
@test "survives a client vanishing mid-write" { check_survives_client_vanishing_mid_write; }
@test "a client that never reads: memory stays bounded, no busy loop" { check_backpressure_bounds_memory; }
@test "a client that never reads does not stall the others" { check_slow_reader_does_not_stall_others; }
@test "an idle client does not block another" { check_idle_client_does_not_block_others; }
@test "1,000 clients at once each get their own bytes back" { check_concurrent_clients 1000 10000; }
@test "SIGTERM and SIGINT: 'shutting down', exit 0" { check_signal_exits_0; }
@test "a signal stops it while it waits for bytes or is mid-transfer" { check_signal_stops_a_busy_server; }

@test "a target that refuses: the client is closed, the forwarder goes on" {
    [ -x "$FORWARDER" ]
    # A port that was just free: the echo server's, once it has gone.
    start_target
    kill -s KILL "$TARGET_PID"
    wait "$TARGET_PID" 2>/dev/null || true
    TARGET_PID=
    launch_server "$FORWARDER" -p 0 127.0.0.1 "$TARGET_PORT"
    run client -t 3000 echo -n 100
    echo "$output"
    [ "$status" -eq 1 ]
    [ "$(field timeout)" -eq 0 ]
    # Both may come after the close the client has seen.
    wait_for_line "$SERVER_ERR" "forwarder: connect 127.0.0.1:$TARGET_PORT: Connection refused"
    wait_for_line "$SERVER_OUT" "closed connection from 127.0.0.1:"
    server_is_running
}
