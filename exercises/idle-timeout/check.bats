#!/usr/bin/env bats
# Build exercise: an idle timeout for 04-epoll (exercises/README.md).
# `make check EX=idle-timeout` runs it against the learner's copy.

CHAPTER=04-epoll
load ../helpers

setup() { require_option -i; }

@test "an idle connection is closed after SECONDS, not before" {
    start_server -i 1
    # One echo round, then silence.
    spawn idle "holding=1" hold -e
    local since
    since=$(now_ms)
    wait_for_line "$SERVER_OUT" "closed connection from" 4
    local waited=$(($(now_ms) - since))
    echo "closed $waited ms after the last echo"
    [ "$waited" -ge 900 ]
    # The client saw it go: its next round finds the connection closed.
    kill -s USR1 "$(spawned_pid idle)"
    wait_for_line "$BATS_TEST_TMPDIR/idle.out" "round=2"
    output=$(spawned_output idle | tail -n 1)
    echo "$output"
    [ "$(field closed)" -eq 1 ]
    server_is_running
}

@test "a connection that keeps talking stays open" {
    start_server -i 1
    spawn talker "holding=1" hold -e
    local round
    # Six rounds 0.4 s apart: 2.4 s in all, more than twice the timeout.
    # The sleep paces the client; every wait is on an event.
    for round in 2 3 4 5 6 7; do
        sleep 0.4
        kill -s USR1 "$(spawned_pid talker)"
        wait_for_line "$BATS_TEST_TMPDIR/talker.out" "round=$round"
    done
    output=$(spawned_output talker)
    echo "$output"
    [[ $output != *"closed=1"* ]]
    ! grep -q "closed connection from" "$SERVER_OUT"
}

@test "a client that stopped reading is closed once nothing moves" {
    start_server -i 1
    # Writes without reading until the server stops taking its bytes.
    spawn reader "stalled" flood -i 300
    wait_for_line "$SERVER_OUT" "closed connection from" 4
    server_is_running
}

@test "500 idle connections are all closed, each once" {
    start_server -i 1
    spawn crowd "holding=500" hold -c 500 -e
    wait_for_lines "$SERVER_OUT" "closed connection from" 500 5
    stop_server
    [ "$(grep -c "closed connection from" "$SERVER_OUT")" -eq 500 ]
}

@test "-i SECONDS: a bad value is a usage error" {
    check_usage_rejects -i 0 -1 x 1x
}
