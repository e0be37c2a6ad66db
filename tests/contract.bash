# The bodies of the tests that every chapter must pass: docs/contract.md, as
# code. A chapter's .bats file names each test and calls its body here, so the
# list of @test lines in a chapter file is the list of what that chapter
# claims, and a body is written once for all chapters.
#
# Each body starts its own server and leaves stopping it to teardown, which
# runs whether the test passed or failed.

MiB=$((1024 * 1024))

# What a client that writes and never reads must see, in words, for the tests
# whose flood must stall.
STALLS="the client that never reads to stall: the server stops reading from it \
once its cap of unsent output is full (\"done\" means that the server took every \
byte without sending it back: it dropped them, or holds them all in memory)"

# ---- The command line ------------------------------------------------------

check_help_goes_to_stdout() {
    run "$SERVER" -h
    [ "$status" -eq 0 ]
    [[ ${lines[0]} == usage:\ echo-server* ]]
}

check_usage_errors_exit_2() {
    local args
    for args in "-x" "-p" "-p 65536" "-p -1" "-p 12ab" "-p ''" "-q -v" "extra"; do
        run --separate-stderr bash -c "exec \"\$0\" $args" "$SERVER"
        echo "echo-server $args: status $status"
        [ "$status" -eq 2 ]
        [ -z "$output" ] # nothing on stdout: the usage goes to stderr
        [[ $stderr == *"usage: echo-server"* ]]
    done
}

check_ready_line_names_the_real_port() {
    start_server
    [[ $(head -n 1 "$SERVER_OUT") == "listening on 127.0.0.1:$SERVER_PORT" ]]
    [ "$SERVER_PORT" -gt 0 ]
}

check_ipv6_and_names() {
    grep -q '^0\{31\}1 ' /proc/net/if_inet6 2>/dev/null || skip "no IPv6 loopback (::1) here"
    start_server -H ::1
    [[ $(head -n 1 "$SERVER_OUT") == "listening on [::1]:$SERVER_PORT" ]]
    run client -H ::1 echo -n 1000
    echo "$output"
    [ "$status" -eq 0 ]
    stop_server
    start_server -H localhost
    [[ $(head -n 1 "$SERVER_OUT") =~ ^listening\ on\ (127\.0\.0\.1|\[::1\]):[0-9]+$ ]]
}

check_bind_failure_exits_1() {
    start_server
    run --separate-stderr "$SERVER" -p "$SERVER_PORT"
    [ "$status" -eq 1 ]
    [[ $stderr == *"echo-server: bind 127.0.0.1:$SERVER_PORT: Address already in use"* ]]
}

check_unknown_host_exits_1() {
    run --separate-stderr "$SERVER" -H no-such-host.invalid -p 0
    [ "$status" -eq 1 ]
    [[ $stderr == echo-server:\ *no-such-host.invalid* ]]
}

# ---- Logs --------------------------------------------------------------------

check_logs_each_connection() {
    start_server
    run client echo -n 10
    echo "$output"
    [ "$status" -eq 0 ]
    # The client is done once its echoes are back; the server logs the close
    # when it reads the end-of-file, which may be later. Stopped before
    # that, chapter 01 never logs it (the kernel closes the connection).
    wait_for_line "$SERVER_OUT" "closed connection from"
    stop_server
    server_logged "accepted connection from 127.0.0.1:"
    server_logged "closed connection from 127.0.0.1:"
    # The same client address in both lines.
    local accepted closed
    accepted=$(grep -o 'accepted connection from .*' "$SERVER_OUT")
    closed=$(grep -o 'closed connection from .*' "$SERVER_OUT")
    [ "${accepted#accepted}" = "${closed#closed}" ]
}

check_quiet_and_verbose_logs() {
    start_server -q
    run client echo -n 10
    echo "$output"
    [ "$status" -eq 0 ]
    stop_server
    # Quiet: the ready line and the shutdown line, nothing per connection.
    [ "$(wc -l <"$SERVER_OUT")" -eq 2 ]

    start_server -v
    run client echo -n 10
    echo "$output"
    [ "$status" -eq 0 ]
    # Stopped before it reads the end-of-file, the server never logs the
    # close (see check_logs_each_connection).
    wait_for_line "$SERVER_OUT" "closed connection from"
    stop_server
    [ "$(wc -l <"$SERVER_OUT")" -ge 5 ] # ready, accepted, echo, closed, shutting down
}

# Without -v, no line per echo: only the connection's two lines. (-v's
# "echoing" lines are for watching a server at work; a busy server would
# otherwise write a line for every read.)
check_logs_echoes_only_with_v() {
    start_server
    run client echo -n 10
    echo "$output"
    [ "$status" -eq 0 ]
    wait_for_line "$SERVER_OUT" "closed connection from"
    stop_server
    cat "$SERVER_OUT"
    if grep -q '^echoing ' "$SERVER_OUT"; then
        echo "expected no 'echoing' line without -v"
        return 1
    fi
    [ "$(wc -l <"$SERVER_OUT")" -eq 4 ] # ready, accepted, closed, shutting down

    start_server -v
    run client echo -n 10
    echo "$output"
    [ "$status" -eq 0 ]
    stop_server
    server_logged "echoing 10 bytes to 127.0.0.1:"
}

# A client's own trouble is per-connection news, like the logs: -q
# silences it. Two clients that reset -- one whose bytes and reset are there
# before the server looks (it is stopped meanwhile), and one that never
# reads, so that the server holds bytes for it -- make the server's recv()
# or send() fail with "Connection reset by peer". Without -q it says so on
# stderr (which shows that the test makes the trouble it means to); with
# -q its stderr stays empty.
check_quiet_silences_client_errors() {
    local quiet
    for quiet in "" -q; do
        start_server ${quiet:+"$quiet"}
        stop_and_wait "$SERVER_PID"
        run client flood -n 1000 -r
        kill -s CONT "$SERVER_PID"
        run client flood -n $((64 * MiB)) -i 300 -r
        expect_match "$output" 'stalled*' "$STALLS"
        # Both resets were in the kernel before this client connected, so
        # the server has dealt with them by the time it echoes.
        run client echo -n 1000
        echo "$output"
        [ "$status" -eq 0 ]
        stop_server
        [ "$SERVER_STATUS" -eq 0 ]
        if [[ -z $quiet ]]; then
            echo "without -q:"
            cat "$SERVER_ERR"
            grep -q 'Connection reset by peer' "$SERVER_ERR" || {
                echo "expected the resets to be reported without -q"
                return 1
            }
        elif [[ -s $SERVER_ERR ]]; then
            echo "expected nothing on stderr with -q; got:"
            cat "$SERVER_ERR"
            return 1
        fi
    done
}

# ---- Echo --------------------------------------------------------------------

check_echoes_a_line() {
    start_server
    run client cat <<<"hello, echo"
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$output" = "hello, echo" ]
}

check_echoes_every_byte_value() {
    start_server
    local bytes=$BATS_TEST_TMPDIR/bytes
    local byte
    for byte in $(seq 0 255); do
        printf "\\$(printf %03o "$byte")"
    done >"$bytes"
    [ "$(wc -c <"$bytes")" -eq 256 ]
    client cat <"$bytes" >"$BATS_TEST_TMPDIR/echoed"
    cmp "$bytes" "$BATS_TEST_TMPDIR/echoed"
}

check_echoes_random_splits() {
    start_server
    # 200 KB written in random pieces of 1 to 7 bytes: the server must not
    # assume that one read is one message.
    run client echo -n 200000 -w 7 -s 3
    echo "$output"
    [ "$status" -eq 0 ]
    run client echo -n $((8 * MiB)) -s 4
    echo "$output"
    [ "$status" -eq 0 ]
}

check_half_close_gets_everything_back() {
    start_server
    # The client shuts down its sending side, then expects all 4 MiB back
    # and then end-of-file: the server finishes echoing before it closes.
    run client echo -n $((4 * MiB)) -x
    echo "$output"
    [ "$status" -eq 0 ]
    run client echo -n 1 -x
    echo "$output"
    [ "$status" -eq 0 ]
    # The same with the bytes and the FIN there before the server looks
    # (it is stopped meanwhile): it learns of both at once, and must still
    # read and echo every byte before it closes.
    stop_and_wait "$SERVER_PID"
    spawn late "sent" echo -n 20000 -x -v
    kill -s CONT "$SERVER_PID"
    wait_for_line "$BATS_TEST_TMPDIR/late.out" "ok="
    expect_match "$(spawned_output late)" "*ok=1 *" "every byte echoed, then end-of-file, though the bytes and the FIN arrived together while the server was stopped"
}

# send() may take fewer bytes than it was given; the rest must follow, from
# where the kernel stopped. On loopback the kernel grows a socket's send
# buffer to megabytes and a send is never short, so the spy (spy.c) makes
# every send take 1 to 5,000 bytes. A server that drops the rest, or sends
# it again from the start, garbles the echo.
check_echoes_exactly_through_short_sends() {
    start_server_with_spy SPY_SHORT_SENDS=5000
    run client echo -c 3 -n $((1 * MiB)) -w 70000 -x
    echo "$output"
    [ "$status" -eq 0 ]
    spy_logged "spy: shortened a send"
}

# Nagle's algorithm off on every connection: invisible by timing on
# loopback, so the spy asks each socket the server sends on.
check_sets_tcp_nodelay() {
    start_server_with_spy
    run client echo -c 3 -n 100000
    echo "$output"
    [ "$status" -eq 0 ]
    run ! grep -F "without TCP_NODELAY" "$SPY_LOG"
}

# ---- Surviving clients ---------------------------------------------------------

check_survives_reset() {
    start_server
    run client flood -n 100 -r
    echo "$output"
    [ "$status" -eq 0 ]
    # The same with the bytes and the reset there before the server looks
    # (it is stopped meanwhile): it learns of both at once.
    stop_and_wait "$SERVER_PID"
    run client flood -n 100 -r
    kill -s CONT "$SERVER_PID"
    [ "$status" -eq 0 ]
    run client echo -n 1000
    echo "$output"
    [ "$status" -eq 0 ]
    server_is_running
}

# Clients that vanish while the server still has bytes for them. Without
# care (SIGPIPE ignored, or MSG_NOSIGNAL) the server's next send() kills it:
# - one writes until the server's buffers are full, then resets;
# - one writes a little, shuts down its sending side, then resets: the
#   reset reaches a server that has seen the FIN, and Linux then fails the
#   next send() with EPIPE, the error that comes with SIGPIPE.
# The second races the server: if the server echoes before the reset
# comes, nothing fails. So the server is stopped meanwhile: the bytes, the
# FIN and the reset all reach its kernel first, and its echo certainly
# meets the reset.
check_survives_client_vanishing_mid_write() {
    start_server
    run client flood -n $((64 * MiB)) -i 300 -r
    expect_match "$output" 'stalled*' "$STALLS"
    stop_and_wait "$SERVER_PID"
    run client flood -n 1000 -x -r
    kill -s CONT "$SERVER_PID"
    expect_match "$output" 'done*' "the client to write its 1,000 bytes, half-close and reset"
    run client echo -n 1000
    echo "$output"
    [ "$status" -eq 0 ]
    server_is_running
}

# SIGSTOP and SIGCONT (^Z and fg, a debugger): no handler runs, but on
# Linux some calls, epoll_wait() among them, return EINTR on the way
# (signal(7), "Interruption of system calls ... by stop signals").
check_goes_on_after_stop_and_continue() {
    start_server
    local round
    for round in 1 2 3; do
        stop_and_wait "$SERVER_PID"
        kill -s CONT "$SERVER_PID"
        run client echo -n 1000
        echo "$output"
        [ "$status" -eq 0 ]
    done
    server_is_running
}

# EINTR: strace makes every second accept, read, write and wait of the
# server fail with EINTR, as a signal arriving at that moment would. The
# server must retry them and the echo must still be exact.
check_retries_after_eintr() {
    # The server's own calls; not write(), which only its log lines use.
    start_server_with_eintr accept,accept4,recvfrom,sendto,select,pselect6,poll,ppoll,epoll_wait,epoll_pwait
    echoes_through_interruptions
}

# The echoes both EINTR tests ask for while calls are being interrupted:
# several connections at once, a long one that waits to write and
# half-closes, and one written in pieces of 1 to 7 bytes.
echoes_through_interruptions() {
    local args
    for args in "-c 5 -n 1000" "-n $((2 * MiB)) -w 5000 -x" "-n 300000 -w 7"; do
        # shellcheck disable=SC2086 # $args is several words
        run client echo $args
        echo "client echo $args: $output"
        [ "$status" -eq 0 ]
    done
    server_is_running
}

# EINTR again, where tracing is refused (the test above then skips): the spy
# (spy.c, SPY_EINTR) makes every second accept, recv, send and wait of the
# server fail with EINTR before it does anything, as a signal arriving at
# that moment would. Its short sends keep connections waiting to write, so
# that the sends of kept bytes are interrupted too, not only the first send
# of each echo. The server must retry them all, echo exactly, and not take
# an interrupted call for an error: nothing on stderr.
check_retries_after_eintr_without_tracing() {
    start_server_with_spy SPY_EINTR=1 SPY_SHORT_SENDS=5000
    echo "expected: every byte echoed back on every connection, though every second accept, recv, send and wait was interrupted (EINTR)"
    echoes_through_interruptions
    local call
    for call in accept recv send wait; do
        spy_logged "spy: interrupted $call"
    done
    if [[ -s $SERVER_ERR ]]; then
        echo "expected nothing on stderr: an interrupted call is no error; got:"
        cat "$SERVER_ERR"
        return 1
    fi
}

# A client that writes and never reads. The server must stop reading from it
# once its cap of unsent output is reached -- the client then stalls -- and
# its memory must not grow with what the client tries to send. Nor may it
# spin while the client is stuck: a server that kept waking up for the stuck
# connection would never sleep.
check_backpressure_bounds_memory() {
    start_server
    local rss_before rss_after
    rss_before=$(server_rss_kib)
    spawn hog "wrote=" flood -n $((256 * MiB)) -i 500
    rss_after=$(server_rss_kib)
    expect_match "$(spawned_output hog)" 'stalled*' "$STALLS"
    echo "server RSS ${rss_before} KiB -> ${rss_after} KiB (expected: under 4 MiB more)"
    [ $((rss_after - rss_before)) -lt 4096 ]
    expect_asleep "a client that never reads stuck"
}

# Connections that close while the server still holds bytes for them: the
# kept bytes go with them. Rounds of 10 clients each write without reading
# until they stall -- the server then holds unsent bytes for every one, up
# to 64 KiB each -- and reset; 6 rounds close 60 such connections. A server
# that forgot to free what a closed connection kept grows by some 20 KiB a
# connection, a megabyte over the last 5 rounds; ours reuses the same
# memory, and grows by a few pages at most. Counted from the end of the first round, so
# that what one round needs does not count.
check_closing_frees_unsent_bytes() {
    # AddressSanitizer holds freed memory in quarantine, so RSS grows either
    # way; its LeakSanitizer finds the same leak at exit instead (every
    # test's server then exits non-zero).
    ! grep -q __asan_init "$SERVER" ||
        skip "under AddressSanitizer, freed memory stays in its quarantine (LeakSanitizer checks at exit)"
    start_server -q
    local round client stalled rss_first rss_last
    for round in 1 2 3 4 5 6; do
        for client in $(seq 10); do
            spawn "flood$client" "" flood -n $((64 * MiB)) -i 200 -r
        done
        # A flood ends by itself: it stalls (or is done), resets and exits;
        # one the server keeps reading, slowly, fails here, not at the
        # whole test's timeout.
        for client in $(seq 10); do
            wait_for_exit "$(spawned_pid "flood$client")" || {
                echo "expected flood client $client of round $round to stall, reset and exit within $WAIT_SECONDS s"
                return 1
            }
            wait "$(spawned_pid "flood$client")" || true
            unset "SPAWNED[flood$client]"
        done
        stalled=$(cat "$BATS_TEST_TMPDIR"/flood*.out | grep -c '^stalled')
        expect_match "$stalled" 10 "all 10 clients of round $round to stall: $STALLS"
        # Every reset has reached the server once it echoes to a client
        # that connected after them.
        run client echo -n 10
        [ "$status" -eq 0 ]
        ((round > 1)) || rss_first=$(server_rss_kib)
    done
    rss_last=$(server_rss_kib)
    echo "server RSS after round 1: $rss_first KiB, after round 6: $rss_last KiB (expected: under 256 KiB more)"
    [ $((rss_last - rss_first)) -lt 256 ]
}

# A backlog that drains. A client sends a lot without reading, so that the
# server's echo to it has to wait and the server waits for room to write;
# then the client reads every echo back and stays connected, idle. With
# nothing left to send the server must stop waiting for room -- a socket
# with room is "writable" at every look, and a server still asking would
# wake at once, for ever -- and sleep. Over one second it may use a few
# milliseconds of CPU and sleep; one that spins is never found asleep.
check_sleeps_again_after_a_backlog() {
    start_server
    spawn hog "read=" -t $((WAIT_SECONDS * 1000)) flood -n $((64 * MiB)) -i 300 -d
    expect_match "$(spawned_output hog)" '*stalled wrote=*drained read=*' \
        "the client's flood to stall (the server stops reading at its cap), then every byte to come back once it reads"
    expect_asleep "idle after the backlog drained"
}

# After a backlog, a burst: the server must read all of it, not one
# buffer's worth. A connection that had a backlog (as above) sends 256 KiB
# at once while the server is stopped, so that the whole burst waits in the
# server's kernel, behind one "readable", when it resumes. A server that
# reads one buffer per edge-triggered event strands the rest; one that
# reads on, or asks level-triggered, echoes it all.
check_echoes_a_burst_after_a_backlog() {
    start_server
    spawn hog "read=" -t $((WAIT_SECONDS * 1000)) flood -n $((64 * MiB)) -i 300 -d
    expect_match "$(spawned_output hog)" '*stalled wrote=*drained read=*' \
        "the client's flood to stall (the server stops reading at its cap), then every byte to come back once it reads"
    stop_and_wait "$SERVER_PID"
    kill -s USR1 "$(spawned_pid hog)"
    wait_for_line "$BATS_TEST_TMPDIR/hog.out" "bursting"
    kill -s CONT "$SERVER_PID"
    wait_for_line "$BATS_TEST_TMPDIR/hog.out" "burst="
    expect_match "$(spawned_output hog)" "*burst=1 *" "all 256 KiB of the burst to come back"
}

# A client that half-closes while its echo waits for it to read. It sends
# 256 KiB and its FIN, and reads nothing until SIGUSR1: more than the way
# back holds (the server's send buffer, 8 KiB with the spy, and the
# client's receive buffer, 128 KiB), so the server's echo has to wait for
# room; and few enough for every byte and the FIN to reach the server's
# kernel, whose receive buffer the spy makes 416 KiB (212,992 bytes asked,
# the most an ordinary user may ask on a stock system, doubled by the
# kernel), so that it does not depend on the kernel's own tuning. (A flood
# until stalled would not do: its FIN would wait behind the bytes the
# server has no room for.) Now the server waits for room to write, and a
# client that has hung up is nothing to act on: it must sleep. One that
# also asked to hear of the hang-up (epoll's EPOLLRDHUP) hears of it at
# every look, for as long as it lasts, and spins. Once the client reads,
# every byte comes back, then end-of-file.
check_half_close_with_echo_pending() {
    local bytes=$((256 * 1024))
    start_server_with_spy SPY_SNDBUF=4096 SPY_RCVBUF=212992
    spy_logged "spy: receive buffer set to"
    spawn hog "paused" -t $((WAIT_SECONDS * 1000)) flood -n $bytes -x -u -d
    expect_match "$(spawned_output hog)" "*wrote=$bytes*paused*" \
        "the client to send all $bytes bytes, half-close and pause"
    wait_for_fin_at_server
    expect_asleep "the client half-closed, its echo waiting for it to read"
    kill -s USR1 "$(spawned_pid hog)"
    wait_for_line "$BATS_TEST_TMPDIR/hog.out" "read="
    expect_match "$(spawned_output hog)" "*drained read=$bytes eof=1*" \
        "every byte back once the client reads, then end-of-file"
}

# A server with too few descriptors for its clients: accept() fails with
# EMFILE. It must say so, go on serving the clients it has, not spin, and
# accept the waiting clients once descriptors are free again.
check_emfile_keeps_serving_and_recovers() {
    # 18 descriptors: stdin, stdout, stderr, the listening socket, the
    # server's own (an epoll instance, a signalfd or a signal pipe) and one
    # or two that bats leaves open leave room for 9 to 11 clients: the
    # first 8 fit, the next 8 do not all fit.
    start_server_with_fd_limit 18
    spawn first "holding=" hold -c 8 -e
    expect_match "$(spawned_output first)" "*echoed=8*" "the first 8 connections to be accepted and echoed"
    spawn waiting "holding=" hold -c 8
    wait_for_line "$SERVER_ERR" "accept: Too many open files"

    # At the limit, with one more client waiting in the kernel's queue: the
    # server must not spin, and its clients must still be served.
    spawn queued "" -t 1000 echo -n 10
    expect_asleep "out of descriptors, a client waiting"
    wait_for_line "$BATS_TEST_TMPDIR/queued.out" "timeout="
    expect_match "$(spawned_output queued)" "*timeout=1*" "the extra client to wait unanswered in the kernel's queue"

    kill -USR1 "$(spawned_pid first)"
    wait_for_line "$BATS_TEST_TMPDIR/first.out" "round=2"
    expect_match "$(spawned_output first)" "*round=2 echoed=8 *" "the 8 connections the server has to go on being served while it is out of descriptors"

    # Descriptors free up: the waiting clients are accepted and served.
    stop_spawned first
    kill -USR1 "$(spawned_pid waiting)"
    wait_for_line "$BATS_TEST_TMPDIR/waiting.out" "round="
    echo "$(spawned_output waiting)"
    expect_match "$(spawned_output waiting)" "*echoed=8 *" "the 8 waiting clients to be accepted and served once descriptors were free again"
    server_is_running
}

# Out of descriptors, the server sleeps until its retry, a second after the
# failed accept(), whatever wakes it meanwhile. Not spinning is not enough:
# a wait of the 700 ms left handed to select() as 700 microseconds costs
# little CPU each time, yet wakes the server a thousand times a second. So
# a connection it holds is served mid-pause, 8 times over two seconds (an
# echo round wakes it, and the time left is then no whole second), and its
# wake-ups are counted (server_wakeups): the echoes' and the retries', a
# few dozen at most; the broken wait's, hundreds.
check_emfile_sleeps_until_the_retry() {
    start_server_with_fd_limit 18
    spawn held "holding=" hold -c 1 -e || {
        echo "expected a first client to connect and be echoed"
        return 1
    }
    spawn crowd "holding=" hold -c 20 || {
        echo "expected 20 more clients to connect (accepted, or waiting in the kernel's queue)"
        return 1
    }
    wait_for_line "$SERVER_ERR" "accept: Too many open files" || {
        echo "expected 'accept: Too many open files' on stderr"
        cat "$SERVER_ERR"
        return 1
    }
    local round before after
    before=$(server_wakeups)
    for round in 2 3 4 5 6 7 8 9; do
        kill -USR1 "$(spawned_pid held)"
        wait_for_line "$BATS_TEST_TMPDIR/held.out" "round=$round" || {
            echo "expected echo round $round of the first client within $WAIT_SECONDS s"
            spawned_output held
            return 1
        }
        # Not a wait for an event: time passing is what is measured. Over
        # these two seconds a server that retries accept() in a loop wakes
        # hundreds of times, one that waits for its retry a few times.
        sleep 0.25
    done
    after=$(server_wakeups)
    expect_match "$(spawned_output held)" "*round=9 echoed=1 *" "the connection the server has to be served while it is out of descriptors"
    echo "wake-ups over 8 echoes and two seconds out of descriptors: $((after - before)) (expected: under 60)"
    [ $((after - before)) -lt 60 ]
}

# Out of descriptors, a connection that closes frees a descriptor, and the
# server must take a waiting client at once, not at its next retry a
# second after the failed accept(). The server is full, and stopped
# (SIGSTOP) while three things happen: a client X1 connects, sends a few
# bytes and half-closes; a client X2 connects; a connection of the
# server's closes. Once it goes on, the server itself runs into the limit
# (X1 or X2 finds no descriptor), then meets a close (the connection's, or
# X1's once it has been echoed). All of it is in its kernel before it goes
# on, so it has nothing to wait for until it has taken both: the next time
# it sleeps, both are accepted. A server that waits for its retry sleeps
# first, with X2 (or both) still in the kernel's queue. No clock is read,
# only the order of the server's own events, whatever the machine is doing.
check_emfile_resumes_accepting_at_once() {
    start_server_with_fd_limit 24
    local round open fd free
    for round in 1 2 3; do
        spawn "holder$round" "echoed=" hold -c 1 -e
        expect_match "$(spawned_output "holder$round")" "*echoed=1 *" "connection $round accepted and echoed"
    done
    # Every other descriptor taken, and no client left waiting. (Numbers of
    # 24 and above, which bats may leave open, take no room below the limit.)
    open=0
    for fd in "/proc/$SERVER_PID/fd/"*; do
        ((${fd##*/} >= 24)) || open=$((open + 1))
    done
    free=$((24 - open))
    spawn crowd "echoed=" hold -c "$free" -e
    expect_match "$(spawned_output crowd)" "*echoed=$free *" "the $free connections that fill the server accepted and echoed"
    local before after
    for round in 1 2 3; do
        stop_and_wait "$SERVER_PID"
        spawn "early$round" "sent" -t 20000 echo -n 10 -x -v
        spawn "late$round" "holding=1" -t 20000 hold -c 1
        stop_spawned "holder$round"
        # A busy machine may deliver a packet on loopback after the call
        # that sent it has returned.
        poll_until "$WAIT_SECONDS" "X1's FIN and the closed connection's in the server's kernel (2 connections in CLOSE_WAIT), and X2's connection complete (none in SYN_RECV)" \
            emfile_round_reached_the_server
        before=$(grep -c "accepted connection" "$SERVER_OUT")
        kill -s CONT "$SERVER_PID"
        wait_for_process_state "$SERVER_PID" S
        after=$(grep -c "accepted connection" "$SERVER_OUT")
        expect_match "$((after - before))" 2 "both new clients accepted by the time the server slept again, round $round (a connection that closes frees a descriptor: a server that waits for its retry a second later sleeps first)"
        stop_spawned "early$round"
    done
}

emfile_round_reached_the_server() {
    (($(server_connections_in "$CLOSE_WAIT") == 2 && $(server_connections_in "$SYN_RECV") == 0))
}

# Out of descriptors for a reason that goes away by itself: no connection of
# the server's closes, so nothing wakes it; it must try accept() again
# within a second. prlimit lowers the server's limit on descriptors to its
# lowest free descriptor number, waits for the EMFILE, and gives the limit
# back.
check_retries_accept_within_a_second() {
    command -v prlimit >/dev/null || skip "prlimit is not installed (util-linux)"
    start_server
    local limit free=0
    limit=$(awk '/^Max open files/ { print $4 }' "/proc/$SERVER_PID/limits")
    while [[ -e /proc/$SERVER_PID/fd/$free ]]; do
        free=$((free + 1))
    done
    prlimit --pid "$SERVER_PID" --nofile="$free:"
    # A first client: it meets the lowered limit, or (chapter 06) takes a
    # descriptor under the old one, io_uring's accept having been submitted
    # before the limit fell; then the next accept fails.
    spawn first "" echo -n 10
    wait_for_line "$SERVER_ERR" "accept: Too many open files"
    spawn late "" echo -n 1000
    prlimit --pid "$SERVER_PID" --nofile="$limit:"
    # One second, and some room for a slow machine.
    wait_for_line "$BATS_TEST_TMPDIR/late.out" "ok=1 "
}

# ---- Shutting down -------------------------------------------------------------

check_signal_exits_0() {
    local signal
    for signal in TERM INT; do
        start_server
        run client echo -n 10
        # The server is idle, waiting, when the signal comes.
        wait_for_line "$SERVER_OUT" "closed connection"
        stop_server "$signal"
        [ "$SERVER_STATUS" -eq 0 ]
        [ "$(tail -n 1 "$SERVER_OUT")" = "shutting down" ]
    done
}

# A signal must stop the server whatever it is doing: waiting for clients,
# waiting for a connected client's bytes, or in the middle of a transfer.
check_signal_stops_a_busy_server() {
    start_server
    spawn idle "holding=1" hold -c 1
    stop_server TERM
    [ "$SERVER_STATUS" -eq 0 ]
    # The held connection was closed: the holder's next round finds it gone.
    kill -USR1 "$(spawned_pid idle)"
    wait_for_line "$BATS_TEST_TMPDIR/idle.out" "round="
    expect_match "$(spawned_output idle)" "*closed=1*" "the held connection to be closed by the server as it shut down"

    start_server
    spawn hog "wrote=" flood -n $((64 * MiB)) -i 300
    stop_server TERM
    [ "$SERVER_STATUS" -eq 0 ]
}

# The kernel would close the connections at exit anyway; the server closes
# them itself, and logs each, after "shutting down".
check_shutdown_closes_every_connection() {
    start_server
    spawn idlers "holding=" hold -c 3 -e
    expect_match "$(spawned_output idlers)" "*echoed=3 *" "3 connections accepted and echoed"
    stop_server TERM
    [ "$SERVER_STATUS" -eq 0 ]
    local after
    after=$(sed -n '/^shutting down$/,$p' "$SERVER_OUT")
    echo "$after"
    [ "$(grep -c '^closed connection from 127.0.0.1:' <<<"$after")" -eq 3 ]
}

# The same at scale: every one of COUNT (default 1,000) connections is
# closed and logged, however the server keeps them (a batch, a table, a
# list). Past FD_SETSIZE (1,100), for a server that can hold that many: a
# loop over descriptors below 1024, chapter 02's, misses the rest.
check_shutdown_closes_every_one_of_many() {
    local count=${1:-1000}
    need_descriptors $((count + 100))
    start_server
    spawn crowd "holding=" -t 20000 hold -c "$count" -e
    expect_match "$(spawned_output crowd)" "*echoed=$count *" "$count connections accepted and echoed"
    stop_server TERM
    [ "$SERVER_STATUS" -eq 0 ]
    local closed
    closed=$(sed -n '/^shutting down$/,$p' "$SERVER_OUT" | grep -c '^closed connection from 127.0.0.1:')
    echo "closed and logged after 'shutting down': $closed of $count connections"
    [ "$closed" -eq "$count" ]
}

# A busy server must see the signal too. pselect(), ppoll() and epoll_pwait()
# let a pending signal in only when nothing is ready: a server that relies
# on them alone and always finds something ready never stops.
#
# To keep something ready every time the server looks, whatever else the
# machine is doing:
# - the server and a load of 50 streaming connections share one CPU, and
#   the server has the lowest priority, so the load refills what it reads
#   before its next look;
# - the server is stopped (SIGSTOP) while the load fills every buffer, so
#   that it resumes with megabytes waiting on every connection;
# - the signal comes only once the server is at work again (its CPU time
#   grows), not while it is still on its way back into its wait, where any
#   server would take it.
# Ours then stop within milliseconds of CPU; the deadline is the usual one,
# so that a server starved of CPU by other work still makes it. A server
# that relies on the wait alone goes on serving the load past it.
check_signal_stops_a_server_under_load() {
    command -v taskset >/dev/null || skip "taskset is not installed (util-linux)"
    command -v renice >/dev/null || skip "renice is not installed (util-linux)"
    local cpus cpu load_pid
    cpus=$(taskset -cp $$)
    cpus=${cpus##*: }
    cpu=${cpus%%[,-]*}
    start_server -q
    taskset -cp "$cpu" "$SERVER_PID" >/dev/null
    renice -n 19 -p "$SERVER_PID" >/dev/null
    spawn load "" -t 60000 echo -c 50 -n 300000000 -w 60000
    load_pid=$(spawned_pid load)
    taskset -cp "$cpu" "$load_pid" >/dev/null
    # Every connection is up and streaming once one echo goes through each
    # of 50 others beside them.
    run client echo -c 50 -n 1000
    echo "$output"
    [ "$status" -eq 0 ]

    stop_and_wait "$SERVER_PID"
    # The load sleeps once it can write no more: every buffer is full.
    wait_for_process_state "$load_pid" S
    local cpu_before
    cpu_before=$(server_cpu_ns)
    kill -s CONT "$SERVER_PID"
    wait_for_cpu_time "$SERVER_PID" $((cpu_before + 2000000))
    kill -s TERM "$SERVER_PID"
    if ! wait_for_exit "$SERVER_PID"; then
        echo "expected the server to stop within $WAIT_SECONDS s of SIGTERM while busy; it went on serving"
        return 1
    fi
    stop_server
    [ "$SERVER_STATUS" -eq 0 ]
}

# The signal may arrive at any moment, even right after start-up. Twenty
# quick starts and stops catch a server that sometimes misses it.
check_signal_at_any_moment() {
    local round
    for round in $(seq 20); do
        start_server
        stop_server TERM
        [ "$SERVER_STATUS" -eq 0 ]
    done
}

check_raises_descriptor_limit() {
    launch_server bash -c 'ulimit -S -n 256 && exec "$@"' _ "$SERVER" -p 0 "${SERVER_ARGS[@]}"
    local soft hard
    read -r soft hard < <(awk '/^Max open files/ { print $4, $5 }' "/proc/$SERVER_PID/limits")
    echo "soft $soft hard $hard"
    [ "$soft" = "$hard" ]
}

# A restarted server binds its port at once, though its old connections
# still hold it: the server closed them first, at shutdown, so they linger
# in the kernel (FIN_WAIT2, then TIME_WAIT) for up to a minute. Without
# SO_REUSEADDR, bind() fails with "Address already in use" all that time.
check_restarts_at_once() {
    start_server
    spawn held "holding=" hold -c 3 -e
    expect_match "$(spawned_output held)" "*echoed=3 *" "3 connections accepted and echoed"
    local port=$SERVER_PORT
    stop_server TERM
    [ "$SERVER_STATUS" -eq 0 ]
    stop_spawned held
    SERVER_NAME=restarted start_server -p "$port" || {
        echo "expected the restarted server to bind port $port at once"
        return 1
    }
    [ "$SERVER_PORT" -eq "$port" ]
    run client echo -n 1000
    echo "$output"
    [ "$status" -eq 0 ]
}

# ---- Many clients (chapters 02 on) ---------------------------------------------

# need_descriptors N: a test with many connections needs N descriptors in
# the server and in the client, beyond the few each holds anyway. Raises the
# soft limit to the hard one (both inherit it), or skips, naming both
# numbers, where the hard limit is too low: the machine's setting, not a
# fault of the server.
need_descriptors() {
    local hard
    hard=$(ulimit -H -n)
    [[ $hard == unlimited ]] || [ "$hard" -ge "$1" ] ||
        skip "needs $1 descriptors; the hard limit here (ulimit -Hn) is $hard"
    ulimit -n "$hard"
}

check_idle_client_does_not_block_others() {
    start_server
    spawn idle "holding=1" hold -c 1
    run client -t 2000 echo -n 1000
    echo "$output"
    [ "$status" -eq 0 ]
}

check_slow_reader_does_not_stall_others() {
    start_server
    spawn hog "wrote=" flood -n $((256 * MiB)) -i 500
    expect_match "$(spawned_output hog)" 'stalled*' "$STALLS"
    run client -t 5000 echo -c 10 -n $((1 * MiB))
    echo "$output"
    [ "$status" -eq 0 ]
}

# Clients that leave in any order: those that stay are still served. (A
# server that keeps its connections in a dense array moves entries about
# as connections close.) The first and the last to arrive leave, each
# closed by the server before the next leaves; then the two in the middle
# must still get their echo.
check_clients_leave_in_any_order() {
    start_server
    local name
    for name in a b c d; do
        spawn "$name" "holding=" hold -c 1 -e
        expect_match "$(spawned_output "$name")" "*echoed=1 *" "client $name connected and echoed"
    done
    stop_spawned a
    wait_for_lines "$SERVER_OUT" "closed connection" 1
    stop_spawned d
    wait_for_lines "$SERVER_OUT" "closed connection" 2
    for name in b c; do
        kill -s USR1 "$(spawned_pid "$name")"
        wait_for_line "$BATS_TEST_TMPDIR/$name.out" "round=2"
        expect_match "$(spawned_output "$name")" "*round=2 echoed=1 *" "client $name still served after others left"
    done
    server_is_running
}

# CONNS clients at once, each with its own bytes: a mix-up between
# connections shows as a mismatch.
check_concurrent_clients() {
    local conns=$1 bytes=$2
    need_descriptors $((conns + 50))
    start_server -q
    run client -t $((WAIT_SECONDS * 4000)) echo -c "$conns" -n "$bytes" -w 1000
    echo "$output"
    [ "$status" -eq 0 ]
}

# The cost of idle connections, measured in CPU time, not wall-clock time.
# select() and poll() pass and scan every descriptor on every call, so a
# wake-up beside IDLE idle connections costs more the more there are;
# epoll's does not.
#
# A busy machine (other work on every core, another suite) moves any one
# measurement by a factor of 3 or more, so no single pair is compared. Two
# servers of the chapter run side by side, one alone and one beside IDLE
# idle connections, and the test client takes turns between them: CHUNKS
# rounds of ECHOES ping-pong echoes each. Whatever disturbs one round
# disturbs its neighbours alike, and the cheapest round of each server is
# what its work costs undisturbed. RATIO_PERCENT: crowded against alone.
cpu_ratio_with_idle_connections() {
    local idle=$1 chunks=8 echoes=200 chunk cost
    local alone_pid alone_port alone_best=-1 crowded_best=-1
    need_descriptors $((idle + 50))
    SERVER_NAME=alone start_server -q
    alone_pid=$SERVER_PID alone_port=$SERVER_PORT
    SPAWNED[alone]=$alone_pid # teardown stops it, like a spawned client
    start_server -q
    spawn idlers "holding=" -t 20000 hold -c "$idle" -e
    expect_match "$(spawned_output idlers)" "*echoed=$idle *" "$idle idle connections accepted and echoed"
    cpu_for_echoes "$alone_pid" "$alone_port" 200 >/dev/null # warm up
    cpu_for_echoes "$SERVER_PID" "$SERVER_PORT" 200 >/dev/null
    for ((chunk = 0; chunk < chunks; chunk++)); do
        cost=$(cpu_for_echoes "$alone_pid" "$alone_port" "$echoes")
        keep_min alone_best "$cost"
        cost=$(cpu_for_echoes "$SERVER_PID" "$SERVER_PORT" "$echoes")
        keep_min crowded_best "$cost"
    done
    echo "# server CPU for $echoes echoes, cheapest of $chunks rounds:" \
        "$((alone_best / 1000)) us alone, $((crowded_best / 1000)) us beside $idle idle connections" >&3
    ((alone_best > 0))
    RATIO_PERCENT=$((crowded_best * 100 / alone_best))
}

# cpu_for_echoes PID PORT ECHOES: prints the CPU time, in nanoseconds, that
# server PID spends answering ECHOES ping-pong echoes on PORT.
cpu_for_echoes() {
    local pid=$1 port=$2 before
    before=$(server_cpu_ns "$pid")
    SERVER_PORT=$port client -t 60000 pingpong -n "$3" >/dev/null || {
        echo "the ping-pong client failed against the server on port $port" >&2
        return 1
    }
    echo $(($(server_cpu_ns "$pid") - before))
}

# keep_min NAME VALUE: the variable NAME becomes VALUE if VALUE is smaller
# than what it holds, or if it holds -1 (nothing yet).
keep_min() {
    local -n smallest=$1
    ((smallest >= 0 && smallest <= $2)) || smallest=$2
}

check_idle_connections_cost_grows() {
    cpu_ratio_with_idle_connections "$1"
    echo "a wake-up beside $1 idle connections costs $RATIO_PERCENT % of one alone (expected: over 300 %)"
    [ "$RATIO_PERCENT" -gt 300 ]
}

# epoll's ratio is about 100 %; select's and poll's are 700 % and more.
check_idle_connections_cost_stays_flat() {
    cpu_ratio_with_idle_connections "$1"
    echo "a wake-up beside $1 idle connections costs $RATIO_PERCENT % of one alone (expected: under 300 %)"
    [ "$RATIO_PERCENT" -lt 300 ]
}

# More descriptors than select() could watch: chapters 03 on hold them all.
check_beyond_fd_setsize() {
    need_descriptors 1150
    start_server -q
    spawn crowd "holding=" -t 20000 hold -c 1100 -e
    echo "$(spawned_output crowd)"
    expect_match "$(spawned_output crowd)" "*echoed=1100 *" "all 1,100 connections accepted and echoed"
}

# ---- select()'s limit (02, and 05 with -b select) -------------------------------

# 1,100 connections against a server whose fd_sets hold descriptors below
# FD_SETSIZE (1024): those that do not fit are closed at once, with a line
# on stderr containing MESSAGE, and those that fit go on being served.
check_fd_setsize_closes_at_once() {
    local message=$1
    need_descriptors 1150
    start_server
    spawn crowd "holding=" -t 20000 hold -c 1100 -e
    output=$(spawned_output crowd)
    echo "$output"
    local echoed closed
    echoed=$(field echoed)
    closed=$(field closed)
    # The server's own descriptors take a few of the 1,024.
    [ "$closed" -ge 76 ]
    [ "$echoed" -ge 1000 ]
    [ $((echoed + closed)) -eq 1100 ]
    server_complained "$message"
    # Those that fit keep being served.
    kill -USR1 "$(spawned_pid crowd)"
    wait_for_line "$BATS_TEST_TMPDIR/crowd.out" "round=2"
    expect_match "$(spawned_output crowd)" "*round=2 echoed=$echoed closed=0 *" "the $echoed connections that fit to go on being served"
    server_is_running
}

# ---- The selector library (05) ----------------------------------------------------

# Every case of 05's selector_test program on one BACKEND: the library alone,
# on socketpairs and pipes, without the server.
check_selector_library() {
    ulimit -n "$(ulimit -H -n)"
    run timeout $((WAIT_SECONDS * 6)) "$(dirname "$SERVER")/selector_test" "$1"
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"ok "* ]]
    [[ $output != *"not ok"* ]]
}
