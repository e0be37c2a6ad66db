#!/usr/bin/env bats
# Chapter 03: poll() has no FD_SETSIZE wall: 10,000 clients.

CHAPTER=03-poll
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
@test "without -v, no line per echo" { check_logs_echoes_only_with_v; }
@test "-q silences a client's errors" { check_quiet_silences_client_errors; }
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
@test "retries calls interrupted by signals (EINTR), without tracing" { check_retries_after_eintr_without_tracing; }
@test "a client that never reads: memory stays bounded" { check_backpressure_bounds_memory; }
@test "after a backlog drains, the idle server sleeps again" { check_sleeps_again_after_a_backlog; }
@test "connections closed with bytes unsent: their memory is freed" { check_closing_frees_unsent_bytes; }
@test "after a backlog, a burst comes back whole" { check_echoes_a_burst_after_a_backlog; }
@test "a client that half-closes with its echo pending: the server sleeps until it reads, then sends it all" { check_half_close_with_echo_pending; }
@test "SIGTERM and SIGINT: 'shutting down', exit 0" { check_signal_exits_0; }
@test "a signal stops it while it waits for bytes or is mid-transfer" { check_signal_stops_a_busy_server; }
@test "a signal stops it at any moment, even right after start-up" { check_signal_at_any_moment; }
@test "restarted at once, it binds the port its old connections still hold" { check_restarts_at_once; }
@test "SIGTERM closes every connection, logging each" { check_shutdown_closes_every_connection; }
@test "SIGTERM closes every one of 1,000 connections" { check_shutdown_closes_every_one_of_many; }
@test "a signal stops it promptly under full load" { check_signal_stops_a_server_under_load; }
@test "raises its descriptor limit to the hard limit" { check_raises_descriptor_limit; }
@test "an idle client does not block another" { check_idle_client_does_not_block_others; }
@test "a client that never reads does not stall the others" { check_slow_reader_does_not_stall_others; }
@test "clients leaving in any order: the others are still served" { check_clients_leave_in_any_order; }
@test "out of descriptors: keeps serving, does not spin, recovers" { check_emfile_keeps_serving_and_recovers; }
@test "out of descriptors: a closing connection resumes accepting at once" { check_emfile_resumes_accepting_at_once; }
@test "out of descriptors until the limit rises: accepts again within a second" { check_retries_accept_within_a_second; }
@test "past FD_SETSIZE: 1,100 connections all echo" { check_beyond_fd_setsize; }
@test "10,000 clients at once each get their own bytes back" { check_concurrent_clients 10000 1000; }
@test "LIMIT: every wake-up costs more as idle connections pile up" { check_idle_connections_cost_grows 5000; }
