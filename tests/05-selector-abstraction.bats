#!/usr/bin/env bats
# Chapter 05: one server on a selector, the same tests on every backend.
#
# Each test body is written once (contract.bash) and named here once per
# backend, so a failure says which backend failed: `on BACKEND BODY ARGS`
# runs BODY against `echo-server -b BACKEND`. select keeps chapter 02's
# FD_SETSIZE limit, so it skips the tests that need more descriptors and
# proves the limit instead.

CHAPTER=05-selector-abstraction
load helpers
load contract

# on BACKEND BODY [ARGS...]: runs a test body with `-b BACKEND`.
on() {
    SERVER_ARGS=(-b "$1")
    "${@:2}"
}

# ---- The command line and the library -------------------------------------

@test "-h prints the usage on stdout and exits 0" { check_help_goes_to_stdout; }
@test "usage errors exit 2 with the usage on stderr" { check_usage_errors_exit_2; }
@test "an unknown host: exit 1" { check_unknown_host_exits_1; }

@test "-h names every backend and the default" {
    run "$SERVER" -h
    [ "$status" -eq 0 ]
    [[ $output == *"-b NAME  backend: epoll | poll | select (default epoll)"* ]]
}

@test "an unknown backend: exit 2 with the usage on stderr" {
    run --separate-stderr "$SERVER" -b kqueue
    [ "$status" -eq 2 ]
    [ -z "$output" ]
    [[ $stderr == *"echo-server: unknown backend: kqueue"* ]]
    [[ $stderr == *"usage: echo-server"* ]]
}

@test "library: every case of selector_test on select" { check_selector_library select; }
@test "library: every case of selector_test on poll" { check_selector_library poll; }
@test "library: every case of selector_test on epoll" { check_selector_library epoll; }

# ---- select -------------------------------------------------------------------

@test "select: the ready line names the real port" { on select check_ready_line_names_the_real_port; }
@test "select: listens on IPv6 and on names" { on select check_ipv6_and_names; }
@test "select: a port in use: exit 1, naming the address" { on select check_bind_failure_exits_1; }
@test "select: logs each connection with the client's address" { on select check_logs_each_connection; }
@test "select: -q logs nothing per connection, -v logs every echo" { on select check_quiet_and_verbose_logs; }
@test "select: without -v, no line per echo" { on select check_logs_echoes_only_with_v; }
@test "select: -q silences a client's errors" { on select check_quiet_silences_client_errors; }
@test "select: echoes a line" { on select check_echoes_a_line; }
@test "select: echoes every byte value" { on select check_echoes_every_byte_value; }
@test "select: echoes exactly however the client splits its writes" { on select check_echoes_random_splits; }
@test "select: half-close: everything comes back, then end-of-file" { on select check_half_close_gets_everything_back; }
@test "select: echoes exactly when the kernel takes only part of each send" { on select check_echoes_exactly_through_short_sends; }
@test "select: sets TCP_NODELAY on every connection" { on select check_sets_tcp_nodelay; }
@test "select: survives a client's reset" { on select check_survives_reset; }
@test "select: survives a client vanishing mid-write (no SIGPIPE death)" { on select check_survives_client_vanishing_mid_write; }
@test "select: stopped and continued (SIGSTOP, SIGCONT), it goes on serving" { on select check_goes_on_after_stop_and_continue; }
@test "select: retries calls interrupted by signals (EINTR)" { on select check_retries_after_eintr; }
@test "select: retries calls interrupted by signals (EINTR), without tracing" { on select check_retries_after_eintr_without_tracing; }
@test "select: a client that never reads: memory stays bounded" { on select check_backpressure_bounds_memory; }
@test "select: after a backlog drains, the idle server sleeps again" { on select check_sleeps_again_after_a_backlog; }
@test "select: connections closed with bytes unsent: their memory is freed" { on select check_closing_frees_unsent_bytes; }
@test "select: after a backlog, a burst comes back whole" { on select check_echoes_a_burst_after_a_backlog; }
@test "select: a client that half-closes with its echo pending: the server sleeps until it reads, then sends it all" { on select check_half_close_with_echo_pending; }
@test "select: SIGTERM and SIGINT: 'shutting down', exit 0" { on select check_signal_exits_0; }
@test "select: a signal stops it while it waits for bytes or is mid-transfer" { on select check_signal_stops_a_busy_server; }
@test "select: a signal stops it at any moment, even right after start-up" { on select check_signal_at_any_moment; }
@test "select: restarted at once, it binds the port its old connections still hold" { on select check_restarts_at_once; }
@test "select: SIGTERM closes every connection, logging each" { on select check_shutdown_closes_every_connection; }
@test "select: SIGTERM closes every one of 1,000 connections" { on select check_shutdown_closes_every_one_of_many; }
@test "select: a signal stops it promptly under full load" { on select check_signal_stops_a_server_under_load; }
@test "select: raises its descriptor limit to the hard limit" { on select check_raises_descriptor_limit; }
@test "select: an idle client does not block another" { on select check_idle_client_does_not_block_others; }
@test "select: a client that never reads does not stall the others" { on select check_slow_reader_does_not_stall_others; }
@test "select: clients leaving in any order: the others are still served" { on select check_clients_leave_in_any_order; }
@test "select: out of descriptors: keeps serving, does not spin, recovers" { on select check_emfile_keeps_serving_and_recovers; }
@test "select: out of descriptors: sleeps until the retry, no busy wake-ups" { on select check_emfile_sleeps_until_the_retry; }
@test "select: out of descriptors: a closing connection resumes accepting at once" { on select check_emfile_resumes_accepting_at_once; }
@test "select: out of descriptors until the limit rises: accepts again within a second" { on select check_retries_accept_within_a_second; }
@test "select: 1,000 clients at once each get their own bytes back" { on select check_concurrent_clients 1000 20000; }
@test "select: LIMIT: a descriptor past FD_SETSIZE is closed at once, the others go on" {
    on select check_fd_setsize_closes_at_once "is beyond what the select backend can watch: closing connection from 127.0.0.1:"
}
@test "select: LIMIT: every wake-up costs more as idle connections pile up" { on select check_idle_connections_cost_grows 1000; }

# ---- poll ---------------------------------------------------------------------

@test "poll: the ready line names the real port" { on poll check_ready_line_names_the_real_port; }
@test "poll: listens on IPv6 and on names" { on poll check_ipv6_and_names; }
@test "poll: a port in use: exit 1, naming the address" { on poll check_bind_failure_exits_1; }
@test "poll: logs each connection with the client's address" { on poll check_logs_each_connection; }
@test "poll: -q logs nothing per connection, -v logs every echo" { on poll check_quiet_and_verbose_logs; }
@test "poll: without -v, no line per echo" { on poll check_logs_echoes_only_with_v; }
@test "poll: -q silences a client's errors" { on poll check_quiet_silences_client_errors; }
@test "poll: echoes a line" { on poll check_echoes_a_line; }
@test "poll: echoes every byte value" { on poll check_echoes_every_byte_value; }
@test "poll: echoes exactly however the client splits its writes" { on poll check_echoes_random_splits; }
@test "poll: half-close: everything comes back, then end-of-file" { on poll check_half_close_gets_everything_back; }
@test "poll: echoes exactly when the kernel takes only part of each send" { on poll check_echoes_exactly_through_short_sends; }
@test "poll: sets TCP_NODELAY on every connection" { on poll check_sets_tcp_nodelay; }
@test "poll: survives a client's reset" { on poll check_survives_reset; }
@test "poll: survives a client vanishing mid-write (no SIGPIPE death)" { on poll check_survives_client_vanishing_mid_write; }
@test "poll: stopped and continued (SIGSTOP, SIGCONT), it goes on serving" { on poll check_goes_on_after_stop_and_continue; }
@test "poll: retries calls interrupted by signals (EINTR)" { on poll check_retries_after_eintr; }
@test "poll: retries calls interrupted by signals (EINTR), without tracing" { on poll check_retries_after_eintr_without_tracing; }
@test "poll: a client that never reads: memory stays bounded" { on poll check_backpressure_bounds_memory; }
@test "poll: after a backlog drains, the idle server sleeps again" { on poll check_sleeps_again_after_a_backlog; }
@test "poll: connections closed with bytes unsent: their memory is freed" { on poll check_closing_frees_unsent_bytes; }
@test "poll: after a backlog, a burst comes back whole" { on poll check_echoes_a_burst_after_a_backlog; }
@test "poll: a client that half-closes with its echo pending: the server sleeps until it reads, then sends it all" { on poll check_half_close_with_echo_pending; }
@test "poll: SIGTERM and SIGINT: 'shutting down', exit 0" { on poll check_signal_exits_0; }
@test "poll: a signal stops it while it waits for bytes or is mid-transfer" { on poll check_signal_stops_a_busy_server; }
@test "poll: a signal stops it at any moment, even right after start-up" { on poll check_signal_at_any_moment; }
@test "poll: restarted at once, it binds the port its old connections still hold" { on poll check_restarts_at_once; }
@test "poll: SIGTERM closes every connection, logging each" { on poll check_shutdown_closes_every_connection; }
@test "poll: SIGTERM closes every one of 1,100 connections, past FD_SETSIZE" { on poll check_shutdown_closes_every_one_of_many 1100; }
@test "poll: a signal stops it promptly under full load" { on poll check_signal_stops_a_server_under_load; }
@test "poll: raises its descriptor limit to the hard limit" { on poll check_raises_descriptor_limit; }
@test "poll: an idle client does not block another" { on poll check_idle_client_does_not_block_others; }
@test "poll: a client that never reads does not stall the others" { on poll check_slow_reader_does_not_stall_others; }
@test "poll: clients leaving in any order: the others are still served" { on poll check_clients_leave_in_any_order; }
@test "poll: out of descriptors: keeps serving, does not spin, recovers" { on poll check_emfile_keeps_serving_and_recovers; }
@test "poll: out of descriptors: sleeps until the retry, no busy wake-ups" { on poll check_emfile_sleeps_until_the_retry; }
@test "poll: out of descriptors: a closing connection resumes accepting at once" { on poll check_emfile_resumes_accepting_at_once; }
@test "poll: out of descriptors until the limit rises: accepts again within a second" { on poll check_retries_accept_within_a_second; }
@test "poll: past FD_SETSIZE: 1,100 connections all echo" { on poll check_beyond_fd_setsize; }
@test "poll: 10,000 clients at once each get their own bytes back" { on poll check_concurrent_clients 10000 1000; }
@test "poll: LIMIT: every wake-up costs more as idle connections pile up" { on poll check_idle_connections_cost_grows 5000; }

# ---- epoll --------------------------------------------------------------------

@test "epoll: the ready line names the real port" { on epoll check_ready_line_names_the_real_port; }
@test "epoll: listens on IPv6 and on names" { on epoll check_ipv6_and_names; }
@test "epoll: a port in use: exit 1, naming the address" { on epoll check_bind_failure_exits_1; }
@test "epoll: logs each connection with the client's address" { on epoll check_logs_each_connection; }
@test "epoll: -q logs nothing per connection, -v logs every echo" { on epoll check_quiet_and_verbose_logs; }
@test "epoll: without -v, no line per echo" { on epoll check_logs_echoes_only_with_v; }
@test "epoll: -q silences a client's errors" { on epoll check_quiet_silences_client_errors; }
@test "epoll: echoes a line" { on epoll check_echoes_a_line; }
@test "epoll: echoes every byte value" { on epoll check_echoes_every_byte_value; }
@test "epoll: echoes exactly however the client splits its writes" { on epoll check_echoes_random_splits; }
@test "epoll: half-close: everything comes back, then end-of-file" { on epoll check_half_close_gets_everything_back; }
@test "epoll: echoes exactly when the kernel takes only part of each send" { on epoll check_echoes_exactly_through_short_sends; }
@test "epoll: sets TCP_NODELAY on every connection" { on epoll check_sets_tcp_nodelay; }
@test "epoll: survives a client's reset" { on epoll check_survives_reset; }
@test "epoll: survives a client vanishing mid-write (no SIGPIPE death)" { on epoll check_survives_client_vanishing_mid_write; }
@test "epoll: stopped and continued (SIGSTOP, SIGCONT), it goes on serving" { on epoll check_goes_on_after_stop_and_continue; }
@test "epoll: retries calls interrupted by signals (EINTR)" { on epoll check_retries_after_eintr; }
@test "epoll: retries calls interrupted by signals (EINTR), without tracing" { on epoll check_retries_after_eintr_without_tracing; }
@test "epoll: a client that never reads: memory stays bounded" { on epoll check_backpressure_bounds_memory; }
@test "epoll: after a backlog drains, the idle server sleeps again" { on epoll check_sleeps_again_after_a_backlog; }
@test "epoll: connections closed with bytes unsent: their memory is freed" { on epoll check_closing_frees_unsent_bytes; }
@test "epoll: after a backlog, a burst comes back whole" { on epoll check_echoes_a_burst_after_a_backlog; }
@test "epoll: a client that half-closes with its echo pending: the server sleeps until it reads, then sends it all" { on epoll check_half_close_with_echo_pending; }
@test "epoll: SIGTERM and SIGINT: 'shutting down', exit 0" { on epoll check_signal_exits_0; }
@test "epoll: a signal stops it while it waits for bytes or is mid-transfer" { on epoll check_signal_stops_a_busy_server; }
@test "epoll: a signal stops it at any moment, even right after start-up" { on epoll check_signal_at_any_moment; }
@test "epoll: restarted at once, it binds the port its old connections still hold" { on epoll check_restarts_at_once; }
@test "epoll: SIGTERM closes every connection, logging each" { on epoll check_shutdown_closes_every_connection; }
@test "epoll: SIGTERM closes every one of 1,100 connections, past FD_SETSIZE" { on epoll check_shutdown_closes_every_one_of_many 1100; }
@test "epoll: a signal stops it promptly under full load" { on epoll check_signal_stops_a_server_under_load; }
@test "epoll: raises its descriptor limit to the hard limit" { on epoll check_raises_descriptor_limit; }
@test "epoll: an idle client does not block another" { on epoll check_idle_client_does_not_block_others; }
@test "epoll: a client that never reads does not stall the others" { on epoll check_slow_reader_does_not_stall_others; }
@test "epoll: clients leaving in any order: the others are still served" { on epoll check_clients_leave_in_any_order; }
@test "epoll: out of descriptors: keeps serving, does not spin, recovers" { on epoll check_emfile_keeps_serving_and_recovers; }
@test "epoll: out of descriptors: sleeps until the retry, no busy wake-ups" { on epoll check_emfile_sleeps_until_the_retry; }
@test "epoll: out of descriptors: a closing connection resumes accepting at once" { on epoll check_emfile_resumes_accepting_at_once; }
@test "epoll: out of descriptors until the limit rises: accepts again within a second" { on epoll check_retries_accept_within_a_second; }
@test "epoll: past FD_SETSIZE: 1,100 connections all echo" { on epoll check_beyond_fd_setsize; }
@test "epoll: 10,000 clients at once each get their own bytes back" { on epoll check_concurrent_clients 10000 1000; }
@test "epoll: the cost of a wake-up stays flat beside 5,000 idle connections" { on epoll check_idle_connections_cost_stays_flat 5000; }
