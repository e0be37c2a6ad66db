#!/usr/bin/env bats
# Chapter 01: a blocking server keeps the whole contract, one client at a time.

CHAPTER=01-blocking
load helpers
load contract

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
@test "echoes exactly when the kernel takes only part of each send" { check_echoes_exactly_through_short_sends; }
@test "sets TCP_NODELAY on every connection" { check_sets_tcp_nodelay; }
@test "survives a client's reset" { check_survives_reset; }
@test "survives a client vanishing mid-write (no SIGPIPE death)" { check_survives_client_vanishing_mid_write; }
@test "stopped and continued (SIGSTOP, SIGCONT), it goes on serving" { check_goes_on_after_stop_and_continue; }
@test "retries calls interrupted by signals (EINTR)" { check_retries_after_eintr; }
@test "a client that never reads: memory stays bounded" { check_backpressure_bounds_memory; }
@test "SIGTERM and SIGINT: 'shutting down', exit 0" { check_signal_exits_0; }
@test "a signal stops it while it waits for bytes or is mid-transfer" { check_signal_stops_a_busy_server; }
@test "a signal stops it at any moment, even right after start-up" { check_signal_at_any_moment; }
@test "raises its descriptor limit to the hard limit" { check_raises_descriptor_limit; }
@test "out of descriptors until the limit rises: accepts again within a second" { check_retries_accept_within_a_second; }

@test "out of descriptors: says so, does not spin, stops on a signal" {
    # Four descriptors: stdin, stdout, stderr and the listening socket.
    # Not one is left for a client, so accept() fails with EMFILE.
    start_server_with_fd_limit 4
    spawn queued "" -t 1000 echo -n 10
    expect_asleep "out of descriptors, a client waiting"
    wait_for_line "$BATS_TEST_TMPDIR/queued.out" "timeout="
    expect_match "$(spawned_output queued)" "*timeout=1*" "the client to wait unanswered in the kernel's queue"
    # Nothing the client sees follows the server's complaint: wait for it.
    wait_for_line "$SERVER_ERR" "echo-server: accept: Too many open files"
    stop_server TERM
    [ "$SERVER_STATUS" -eq 0 ]
}

# The limitation that leads to chapter 02.
@test "LIMIT: a second client waits until the first one leaves" {
    start_server
    spawn first "holding=1" hold -c 1 -e
    spawn second "sent" -t 10000 echo -n 100 -v
    # While the first client stays connected, the second gets nothing back
    # for a second ... (`run !`, because bash's `set -e` ignores a `!` line)
    run ! wait_for_line "$BATS_TEST_TMPDIR/second.out" "ok=" 1
    # ... and once it leaves, the second is served.
    stop_spawned first
    wait_for_line "$BATS_TEST_TMPDIR/second.out" "ok=1 "
}
