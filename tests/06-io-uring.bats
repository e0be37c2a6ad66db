#!/usr/bin/env bats
# Chapter 06: io_uring: completion instead of readiness. The whole contract,
# then the chapter's own lessons: who owns a buffer while a request is in
# flight, short sends, idle connections that hold no buffer, and a server
# that says so where io_uring is missing.

CHAPTER=06-io-uring
load helpers
load contract

# Where io_uring is missing or refused (an old kernel, a sandbox, Docker's
# default seccomp profile, kernel.io_uring_disabled), the server exits 1
# with "echo-server: io_uring: REASON" before its ready line. One start
# (tests/io-uring-probe, which make doctor runs too) finds out; every test
# that needs a running server then skips with that reason.
setup_file() {
    local line
    line=$("$TESTS_DIR/io-uring-probe" "$SERVER" "$WAIT_SECONDS" 3>&-) || true
    if [[ $line == "echo-server: io_uring: "* ]]; then
        export IO_URING_UNAVAILABLE=${line#echo-server: }
    fi
}

setup() {
    case $BATS_TEST_DESCRIPTION in
    -h* | usage* | "no io_uring"*) return 0 ;;
    esac
    [[ -z ${IO_URING_UNAVAILABLE:-} ]] || skip "$IO_URING_UNAVAILABLE"
}

@test "-h prints the usage on stdout and exits 0" { check_help_goes_to_stdout; }
@test "usage errors exit 2 with the usage on stderr" { check_usage_errors_exit_2; }
@test "the ready line names the real port" { check_ready_line_names_the_real_port; }
@test "listens on IPv6 and on names" { check_ipv6_and_names; }
@test "a port in use: exit 1, naming the address" { check_bind_failure_exits_1; }
@test "an unknown host: exit 1" { check_unknown_host_exits_1; }
@test "logs each connection with the client's address" { check_logs_each_connection; }
@test "-q logs nothing per connection, -v logs every echo" { check_quiet_and_verbose_logs; }
@test "echoes a line" { check_echoes_a_line; }
@test "echoes every byte value" { check_echoes_every_byte_value; }
@test "echoes exactly however the client splits its writes" { check_echoes_random_splits; }
@test "half-close: everything comes back, then end-of-file" { check_half_close_gets_everything_back; }
@test "-q silences a client's errors" { check_quiet_silences_client_errors; }
@test "SIGTERM closes every one of 1,000 connections" { check_shutdown_closes_every_one_of_many; }
@test "after a backlog drains, the idle server sleeps again" { check_sleeps_again_after_a_backlog; }
@test "after a backlog, a burst comes back whole" { check_echoes_a_burst_after_a_backlog; }
@test "connections closed with bytes unsent: their memory is freed" { check_closing_frees_unsent_bytes; }
@test "out of descriptors: a closing connection resumes accepting at once" { check_emfile_resumes_accepting_at_once; }
@test "restarted at once, it binds the port its old connections still hold" { check_restarts_at_once; }
@test "without -v, no line per echo" { check_logs_echoes_only_with_v; }
@test "survives a client's reset" { check_survives_reset; }
@test "survives a client vanishing mid-write (no SIGPIPE death)" { check_survives_client_vanishing_mid_write; }
@test "stopped and continued (SIGSTOP, SIGCONT), it goes on serving" { check_goes_on_after_stop_and_continue; }
@test "a client that never reads: memory stays bounded" { check_backpressure_bounds_memory; }
@test "a client that half-closes with its echo pending: the server sleeps until it reads, then sends it all" { check_half_close_with_echo_pending; }
@test "SIGTERM and SIGINT: 'shutting down', exit 0" { check_signal_exits_0; }
@test "a signal stops it while it waits for bytes or is mid-transfer" { check_signal_stops_a_busy_server; }
@test "a signal stops it at any moment, even right after start-up" { check_signal_at_any_moment; }
@test "SIGTERM closes every connection, logging each" { check_shutdown_closes_every_connection; }
@test "a signal stops it promptly under full load" { check_signal_stops_a_server_under_load; }
@test "raises its descriptor limit to the hard limit" { check_raises_descriptor_limit; }
@test "an idle client does not block another" { check_idle_client_does_not_block_others; }
@test "a client that never reads does not stall the others" { check_slow_reader_does_not_stall_others; }
@test "clients leaving in any order: the others are still served" { check_clients_leave_in_any_order; }
@test "out of descriptors: keeps serving, does not spin, recovers" { check_emfile_keeps_serving_and_recovers; }
@test "out of descriptors until the limit rises: accepts again within a second" { check_retries_accept_within_a_second; }
@test "past FD_SETSIZE: 1,100 connections all echo" { check_beyond_fd_setsize; }
@test "10,000 clients at once each get their own bytes back" { check_concurrent_clients 10000 1000; }
@test "the cost of a wake-up stays flat beside 5,000 idle connections" { check_idle_connections_cost_stays_flat 5000; }

# ---- What io_uring changes ----------------------------------------------------
#
# Four shared tests do not fit as they are; three have their own here:
# - "echoes exactly when the kernel takes only part of each send" and "sets
#   TCP_NODELAY on every connection" rely on the spy seeing send(), which
#   io_uring's sends never pass through;
# - "retries calls interrupted by signals (EINTR)" and its spy version
#   ("..., without tracing") make accept, recv, send and the waits fail
#   with EINTR: this server makes none of those calls, only
#   io_uring_enter(), which the one here fails under strace.

# Short sends for real: the spy gives the listening socket a send buffer of
# 4 KiB (the kernel doubles it), which every connection inherits, so the
# kernel takes only part of each 64 KiB send. -v logs each short
# completion. More connections than the pool has buffers (64), so that a
# buffer given back too early is at once taken by a waiting connection and
# written over while its send still reads from it.
@test "short sends happen, and every byte comes back in order" {
    start_server_with_spy SPY_SNDBUF=4096 -- -v
    spy_logged "spy: send buffer set to 4096"
    run client -t $((WAIT_SECONDS * 4000)) echo -c 100 -n $((1 * MiB)) -w 70000 -x
    echo "$output"
    [ "$status" -eq 0 ]
    local shorts
    shorts=$(grep -c '^short send: ' "$SERVER_OUT" || true)
    echo "short completions: $shorts"
    [ "$shorts" -gt 100 ]
}

# The pool empty, and connections without bytes among those waiting for a
# buffer. 64 clients (as many as the pool has buffers) each send 4 MiB and
# never read: with a 4 KiB send buffer in the server, each connection keeps
# a buffer of unsent bytes, and the pool is empty. Then 20 idle clients
# connect, and one client sends: all their receives find the pool empty.
# One of the 64 leaves, and its buffer comes back: the client with bytes
# must get it, whoever else is waiting.
@test "the pool empty: a returned buffer goes to a client with bytes" {
    start_server_with_spy SPY_SNDBUF=4096
    local i
    for i in $(seq 64); do
        spawn "hog$i" "wrote=" flood -n $((4 * MiB)) -i 300
    done
    spawn idle "holding=20" hold -c 20
    wait_for_lines "$SERVER_OUT" "accepted connection" 84
    spawn late "" -t $((WAIT_SECONDS * 1000)) echo -n 1000 -v
    wait_for_line "$BATS_TEST_TMPDIR/late.out" "sent"
    wait_for_lines "$SERVER_OUT" "accepted connection" 85
    # Nothing comes back while the pool is empty.
    [[ $(spawned_output late) != *"ok="* ]]
    stop_spawned hog1
    wait_for_line "$BATS_TEST_TMPDIR/late.out" "ok=1 "
}

# Nagle's algorithm off on every connection. The spy cannot see io_uring's
# sends, so it asks each connection as the server closes it.
@test "sets TCP_NODELAY on every connection (asked at each close)" {
    start_server_with_spy
    run client echo -c 3 -n 100000
    [ "$status" -eq 0 ]
    stop_server
    spy_logged "spy: closed a connection with TCP_NODELAY"
    run ! grep -F "without TCP_NODELAY" "$SPY_LOG"
}

# io_uring_enter() interrupted: strace makes every second call fail with
# EINTR, as a signal arriving then would (SIGSTOP and SIGCONT do it for
# real). The server must go round again, and lose nothing.
@test "retries io_uring_enter interrupted by signals (EINTR)" {
    start_server_with_eintr io_uring_enter
    run client echo -c 5 -n $((2 * MiB)) -w 5000 -x
    echo "$output"
    [ "$status" -eq 0 ]
    run client pingpong -n 200
    [ "$status" -eq 0 ]
    # strace, not the server, is our child; it exits with the server's status.
    kill -s TERM "$SERVER_PID"
    SERVER_PID=
    wait_for_exit "$(spawned_pid strace)"
    local status=0
    wait "$(spawned_pid strace)" || status=$?
    unset "SPAWNED[strace]"
    [ "$status" -eq 0 ]
}

# ---- Buffer ownership ------------------------------------------------------------
#
# A buffer handed to the kernel is the kernel's until its completion comes.
# Each test below churns connections that end while the kernel holds their
# requests, beside clients whose every byte is checked, and ends with a
# clean exit: a buffer reused too early garbles a checked echo, memory freed
# too early crashes the server or trips the sanitizers (make test
# SANITIZE=1), and a close that does not wait for its completions either
# crashes on a late one or never finishes shutting down.

# The sanitizers print their reports on stderr.
server_stderr_is_clean() {
    if grep -E "AddressSanitizer|LeakSanitizer|runtime error" "$SERVER_ERR"; then
        return 1
    fi
}

@test "clients that reset mid-transfer: the others' bytes stay right" {
    start_server -q
    spawn checked "" -t $((WAIT_SECONDS * 4000)) echo -c 20 -n $((4 * MiB)) -w 70000
    local round
    for round in 1 2 3 4 5; do
        # Writes until the server's buffers are full, then resets: the
        # server has a send in flight when the reset comes.
        run client flood -n $((16 * MiB)) -i 200 -r
        run client flood -n 100 -r
    done
    wait_for_line "$BATS_TEST_TMPDIR/checked.out" "ok=" $((WAIT_SECONDS * 4))
    echo "$(spawned_output checked)"
    [[ $(spawned_output checked) == "ok=20 "* ]]
    stop_server
    [ "$SERVER_STATUS" -eq 0 ]
    server_stderr_is_clean
}

@test "thousands of clients vanish at once: all closed, the rest served" {
    need_descriptors 2100
    start_server
    spawn crowd "holding=" -t 20000 hold -c 2000 -e
    [[ $(spawned_output crowd) == *"echoed=2000 "* ]]
    spawn checked "" -t $((WAIT_SECONDS * 4000)) echo -c 10 -n $((4 * MiB)) -w 70000
    # SIGKILL: the kernel closes all 2,000 sockets of the client at once.
    kill -s KILL "$(spawned_pid crowd)"
    wait_for_exit "$(spawned_pid crowd)"
    unset "SPAWNED[crowd]"
    wait_for_lines "$SERVER_OUT" "closed connection" 2000 $((WAIT_SECONDS * 4))
    wait_for_line "$BATS_TEST_TMPDIR/checked.out" "ok=" $((WAIT_SECONDS * 4))
    echo "$(spawned_output checked)"
    [[ $(spawned_output checked) == "ok=10 "* ]]
    stop_server
    [ "$SERVER_STATUS" -eq 0 ]
    server_stderr_is_clean
}

# SIGTERM while every kind of request is in flight: receives posted and
# waiting for bytes, sends to clients that do not read, echoes streaming,
# and more connections than buffers, some waiting for one. Shut-down must
# cancel each, wait for every completion, close every connection and exit 0.
@test "SIGTERM under full load: every connection closed, a clean exit" {
    need_descriptors 1200
    start_server
    spawn idle "holding=" -t 20000 hold -c 1000 -e
    spawn hog1 "wrote=" flood -n $((64 * MiB)) -i 300
    spawn hog2 "wrote=" flood -n $((64 * MiB)) -i 300
    spawn load "" -t 60000 echo -c 100 -n 300000000 -w 60000
    if ! wait_for_lines "$SERVER_OUT" "accepted connection" 1102 $((WAIT_SECONDS * 4)); then
        echo "accepted: $(grep -c '^accepted connection' "$SERVER_OUT")"
        spawned_output idle
        cat "$BATS_TEST_TMPDIR/load.err" "$SERVER_ERR"
        return 1
    fi
    run client echo -c 20 -n 1000
    [ "$status" -eq 0 ]
    local accepted
    accepted=$(grep -c '^accepted connection' "$SERVER_OUT")
    stop_server TERM
    [ "$SERVER_STATUS" -eq 0 ]
    local closed
    closed=$(grep -c '^closed connection' "$SERVER_OUT")
    echo "accepted $accepted, closed $closed"
    [ "$closed" -eq "$accepted" ]
    [ "$(tail -n 1 "$SERVER_OUT")" != "shutting down" ] # the closes come after it
    server_stderr_is_clean
}

# An error completion ends that one connection -- neither the server (a
# fatal error) nor nothing at all (an ignored error leaves a connection
# that fails its receive again and again, at full speed).
@test "after clients reset, their connections close and the server sleeps" {
    start_server
    local round
    # Clients that connect and reset at once: the receive the server posts
    # completes with ECONNRESET (the server says so on stderr) ...
    for round in 1 2 3; do
        run client flood -n 0 -r
        [ "$status" -eq 0 ]
    done
    # ... and clients that reset while a send to them is in flight.
    run client flood -n $((16 * MiB)) -i 200 -r
    run client flood -n 100 -r
    wait_for_lines "$SERVER_OUT" "closed connection" 5
    server_complained "recv from 127.0.0.1:"
    server_is_running
    expect_asleep "after the resets, with nothing to do"
    run client echo -n 1000
    [ "$status" -eq 0 ]
}

# Out of descriptors, a spinning server retries accept at full speed -- but
# on a busy machine it may get so little CPU that a bound on its CPU time
# misses it. Its error lines are a count that load cannot move: over one
# second at the limit, with no connection closing, the server may try
# again once (the one-second timer), not thousands of times.
@test "out of descriptors: accept is retried once a second, not in a loop" {
    start_server_with_fd_limit 18
    spawn first "holding=" hold -c 16
    wait_for_line "$SERVER_ERR" "accept: Too many open files"
    local before after
    before=$(grep -c "accept: Too many open files" "$SERVER_ERR")
    run client -t 1000 echo -n 10
    [ "$(field timeout)" -eq 1 ] # it waited in the kernel's queue
    after=$(grep -c "accept: Too many open files" "$SERVER_ERR")
    echo "accept failed $((after - before)) times in a second at the limit"
    [ $((after - before)) -le 3 ]
    # A close lets the waiting client in at once.
    stop_spawned first
    run client echo -n 10
    [ "$status" -eq 0 ]
}

# ---- Where io_uring is not there ---------------------------------------------------

# strace makes io_uring_setup() fail as an old kernel (ENOSYS), a seccomp
# profile (EPERM) or a kernel before 5.19 that does not know a set-up flag
# (EINVAL) would, then the registration of the buffer ring as a kernel
# before 5.19 would (EINVAL). Where kernel.io_uring_disabled is set, the
# server names it instead of guessing at an EPERM or an EINVAL.
@test "no io_uring: one line naming the reason, exit 1" {
    need_strace
    local prefix="echo-server: io_uring: io_uring_setup:" disabled=0
    [[ -r /proc/sys/kernel/io_uring_disabled ]] &&
        disabled=$(</proc/sys/kernel/io_uring_disabled)
    expect_refusal io_uring_setup:error=ENOSYS \
        "$prefix Function not implemented (no io_uring in this kernel, or a sandbox hides it)"
    if ((disabled)); then
        expect_refusal io_uring_setup:error=EPERM \
            "$prefix Operation not permitted (kernel.io_uring_disabled is $disabled)"
        expect_refusal io_uring_setup:error=EINVAL \
            "$prefix Invalid argument (kernel.io_uring_disabled is $disabled)"
    else
        expect_refusal io_uring_setup:error=EPERM \
            "$prefix Operation not permitted (a seccomp profile or a sandbox refuses it)"
        expect_refusal io_uring_setup:error=EINVAL \
            "$prefix Invalid argument (Linux 5.19 or later is needed)"
    fi
    [[ -n ${IO_URING_UNAVAILABLE:-} ]] && return 0
    # The second io_uring_register() registers the buffer ring.
    expect_refusal io_uring_register:error=EINVAL:when=2 \
        "echo-server: io_uring: IORING_REGISTER_PBUF_RING: Invalid argument (provided-buffer rings need Linux 5.19)"
}

# expect_refusal INJECTION LINE: the server, with strace injecting the
# error INJECTION names, writes LINE and nothing else, and exits 1.
expect_refusal() {
    run --separate-stderr traced -e "inject=$1" "$SERVER" -p 0
    echo "$stderr"
    [ "$status" -eq 1 ]
    [ -z "$output" ]
    [ "${#stderr_lines[@]}" -eq 1 ]
    [ "$stderr" = "$2" ]
}
