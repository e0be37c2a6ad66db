#!/usr/bin/env bats
# Build exercise: 04-epoll, edge-triggered (exercises/README.md).
# `make check EX=edge-triggered` runs it against the learner's copy, then
# all of tests/04-epoll.bats.

CHAPTER=04-epoll
load ../helpers

# The sockets the server's epoll sets watch, from the kernel's own account
# (proc(5), /proc/PID/fdinfo): one line "FD ET" or "FD LT" for each.
epoll_sockets() {
    local info key fd label mask rest
    for info in /proc/"$SERVER_PID"/fdinfo/*; do
        while read -r key fd label mask rest; do
            [[ $key == tfd: && $label == events: ]] || continue
            [[ $(readlink "/proc/$SERVER_PID/fd/$fd") == socket:* ]] || continue
            if (((0x$mask & 0x80000000) != 0)); then echo "$fd ET"; else echo "$fd LT"; fi
        done <"$info"
    done
}

@test "every connection is registered edge-triggered (EPOLLET)" {
    start_server
    spawn held "holding=5" hold -c 5 -e
    # One more that has bytes waiting to go out: it never reads.
    spawn flooder "stalled" flood -i 300
    # The kernel takes its bytes before the server accepts it: "stalled"
    # does not say that it is in the epoll set. The server logs a
    # connection once it is.
    wait_for_lines "$SERVER_OUT" "accepted connection from" 6
    local sockets
    sockets=$(epoll_sockets)
    echo "the sockets in the server's epoll set, by descriptor:"
    echo "$sockets"
    # Six connections edge-triggered; level-triggered at most one socket,
    # the listening one.
    [ "$(grep -c ' ET$' <<<"$sockets")" -ge 6 ]
    [ "$(grep -c ' LT$' <<<"$sockets")" -le 1 ]
}

@test "a burst, then silence: every byte comes back" {
    start_server
    # Each client writes far more than one recv() takes, then half-closes
    # and goes quiet: nothing more will arrive to bring another edge.
    run client echo -n $((4 * MiB)) -x
    echo "$output"
    [ "$status" -eq 0 ]
    run client echo -c 50 -n 300000 -x
    echo "$output"
    [ "$status" -eq 0 ]
}
