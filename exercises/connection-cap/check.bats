#!/usr/bin/env bats
# Build exercise: a cap on connections for 03-poll (exercises/README.md).
# `make check EX=connection-cap` runs it against the learner's copy.

CHAPTER=03-poll
load ../helpers

setup() { require_option -m; }

@test "-m MAX: a bad value is a usage error" {
    check_usage_rejects -m 0 -1 x 2x
}

@test "beyond MAX: turned away at once, with a log line" {
    start_server -m 2
    spawn held "holding=2" hold -c 2 -e
    run client -t 3000 echo -n 100
    echo "$output"
    [ "$status" -eq 1 ]
    [ "$(field timeout)" -eq 0 ] # closed, not left waiting
    # The server may log the refusal after the close the client has seen.
    wait_for_line "$SERVER_OUT" "refused connection from 127.0.0.1:"
    # The two inside are still served.
    kill -s USR1 "$(spawned_pid held)"
    wait_for_line "$BATS_TEST_TMPDIR/held.out" "round=2"
    [[ $(spawned_output held) == *"round=2 echoed=2 closed=0 "* ]]
}

@test "a place that frees up is taken by the next client" {
    start_server -m 2
    spawn held "holding=2" hold -c 2 -e
    stop_spawned held
    wait_for_lines "$SERVER_OUT" "closed connection from" 2
    run client echo -c 2 -n 100
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "-m 300: 300 are served, the 301st is not" {
    start_server -m 300
    spawn crowd "holding=300" hold -c 300 -e
    [[ $(spawned_output crowd) == *"echoed=300 "* ]]
    run client -t 3000 echo -n 100
    [ "$status" -eq 1 ]
    wait_for_line "$SERVER_OUT" "refused connection from"
    [ "$(grep -c "refused connection from" "$SERVER_OUT")" -eq 1 ]
}

@test "-q: no refusal line" {
    start_server -q -m 1
    spawn held "holding=1" hold -e
    run client -t 3000 echo -n 100
    [ "$status" -eq 1 ]
    ! grep -q "refused connection from" "$SERVER_OUT"
}
