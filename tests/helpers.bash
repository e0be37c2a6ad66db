# Helpers shared by every chapter's tests: start and stop a server, run the
# test client against it, and wait on events -- a line in a log, a process's
# exit -- always with a deadline, so that a hang fails one test, not the run.
#
# A chapter's .bats file sets CHAPTER (and, for a chapter with options,
# SERVER_ARGS) and then loads this file and contract.bash.

# The oldest bats these helpers and the tests run on (tests/bats-floor says
# why). `load` sources this file: BASH_SOURCE names it, wherever the test is.
# shellcheck source=tests/bats-floor
source "$(dirname "${BASH_SOURCE[0]}")/bats-floor"
bats_require_minimum_version "$bats_floor"

TESTS_DIR=$(cd "$BATS_TEST_DIRNAME" && pwd)
ROOT=$(cd "$TESTS_DIR/.." && pwd)
CLIENT=$TESTS_DIR/client
# ECHO_SERVER: test another build of the chapter's server (mutants/run does,
# with a planted bug).
SERVER=${ECHO_SERVER:-$ROOT/$CHAPTER/echo-server}
SERVER_ARGS=("${SERVER_ARGS[@]}")

# How long to wait for anything that should happen. Sanitizer builds run
# slower, and `make test SANITIZE=1` raises it.
WAIT_SECONDS=${WAIT_SECONDS:-5}

# The bound of a whole test, past which bats fails it (and teardown still
# runs): a hang costs one test, not the run. The slowest tests take a few
# seconds; this is a dozen of the waits above. bats needs ps or pkill to
# enforce it.
if command -v ps >/dev/null || command -v pkill >/dev/null; then
    BATS_TEST_TIMEOUT=${BATS_TEST_TIMEOUT:-$((WAIT_SECONDS * 12))}
fi

SERVER_PID=
SERVER_PORT=
SERVER_STATUS=
SERVER_OUT=
SERVER_ERR=
# -g: `load` sources this file inside a function.
declare -gA SPAWNED=()

# wait_for_line FILE TEXT [SECONDS]: succeeds once a line of FILE contains
# TEXT, fails when SECONDS (default WAIT_SECONDS) pass first. `tail -f`
# wakes on each write to the file, so there is no polling.
wait_for_line() {
    wait_for_lines "$1" "$2" 1 "${3:-$WAIT_SECONDS}"
}

# wait_for_lines FILE TEXT COUNT [SECONDS]: the same, for COUNT such lines.
# grep reads what tail passes on in blocks, and -m stops it at the COUNTth
# line. (bash's read takes a pipe a byte at a time, a system call each,
# which on a busy machine made 2,000 log lines take over 20 seconds.)
wait_for_lines() {
    local file=$1 text=$2 count=$3 seconds=${4:-$WAIT_SECONDS} fd tail_pid found
    exec {fd}< <(exec timeout "$seconds" tail -n +1 -f "$file" 3>&-)
    tail_pid=$!
    found=$(grep -m "$count" -cF -- "$text" <&"$fd") || true
    kill "$tail_pid" 2>/dev/null || true # gone already if timeout ended it
    exec {fd}<&-
    ((${found:-0} >= count)) && return 0
    echo "${found:-0} of $count lines with '$text' in $file within $seconds s"
    return 1
}

# wait_for_exit PID [SECONDS]: succeeds once process PID has ended.
wait_for_exit() {
    timeout "${2:-$WAIT_SECONDS}" tail --pid="$1" -s 0.05 -f /dev/null
}

# start_server [OPTIONS...]: starts the chapter's server on a free port
# (-p 0) in the background and waits for its ready line. Sets SERVER_PID,
# SERVER_PORT, SERVER_OUT (its stdout) and SERVER_ERR (its stderr).
start_server() {
    launch_server "$SERVER" -p 0 "${SERVER_ARGS[@]}" "$@"
}

# start_server_with_spy [VAR=VALUE...] [-- OPTIONS...]: the same, with spy.so
# preloaded (see spy.c) and its log in SPY_LOG; VAR=VALUE set its switches,
# such as SPY_SHORT_SENDS=4096. Skips the test if the library did not load.
start_server_with_spy() {
    local settings=()
    while [[ $# -gt 0 && $1 != -- ]]; do
        settings+=("$1")
        shift
    done
    [[ $# -eq 0 ]] || shift
    SPY_LOG=$BATS_TEST_TMPDIR/spy.log
    : >"$SPY_LOG"
    # A sanitized build checks that its runtime comes first among the
    # libraries; the spy does, harmlessly.
    launch_server env LD_PRELOAD="$TESTS_DIR/spy.so" SPY_LOG="$SPY_LOG" "${settings[@]}" \
        ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
        "$SERVER" -p 0 "${SERVER_ARGS[@]}" "$@"
    grep -q "^spy: loaded" "$SPY_LOG" || skip "the spy library did not load (LD_PRELOAD)"
}

# start_server_with_fd_limit N [OPTIONS...]: the same, with the soft and hard
# limits on open descriptors both set to N, so the server cannot raise it.
start_server_with_fd_limit() {
    local limit=$1
    shift
    launch_server bash -c 'ulimit -n "$0" && exec "$@"' "$limit" \
        "$SERVER" -p 0 "${SERVER_ARGS[@]}" "$@"
}

# start_server_with_eintr CALLS [OPTIONS...]: the same, under strace, which
# makes every second of CALLS (system calls, comma-separated) fail with
# EINTR, as a signal arriving at that moment would. SERVER_PID is the
# server's; teardown stops strace like a spawned client, and strace passes
# the signal on to the server. Skips where strace cannot trace (need_strace).
start_server_with_eintr() {
    local calls=$1
    shift
    need_strace
    # bash writes its process ID, which exec hands on to the server, so
    # that SERVER_PID is the server's and not strace's.
    local pid_file=$BATS_TEST_TMPDIR/server.pid
    if ! launch_server traced -f -e "trace=$calls" \
        -e "inject=$calls:error=EINTR:when=2+2" \
        bash -c 'echo $$ >"$0" && exec "$@"' "$pid_file" \
        "$SERVER" -p 0 "${SERVER_ARGS[@]}" "$@"; then
        # Teardown ends strace; the server must not run on without it.
        [[ ! -s $pid_file ]] || kill -s KILL "$(<"$pid_file")" 2>/dev/null || true
        return 1
    fi
    SPAWNED[strace]=$SERVER_PID
    SERVER_PID=$(<"$pid_file")
}

# traced STRACE-OPTIONS... COMMAND...: execs strace -o /dev/null with those
# options, so call it only where a child runs it: under run, or through
# launch_server. LeakSanitizer's check at exit (SANITIZE=1) cannot work
# under ptrace and would add its own lines and exit status; it is turned off.
traced() {
    ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 exec strace -o /dev/null "$@"
}

# need_strace: skips the test unless strace is installed and may trace.
# Tests have strace start the server as its child, not attach to it: where
# kernel.yama.ptrace_scope is 1 (Ubuntu's default), a user who is not root
# may trace only their own descendants. Where tracing is refused even so
# (ptrace_scope 2 or 3, or a container that forbids ptrace), the test skips
# and says why.
need_strace() {
    command -v strace >/dev/null || skip "strace is not installed (apt-get install strace)"
    local refusal
    if ! refusal=$(strace -o /dev/null true 2>&1); then
        skip "strace may not trace here: ${refusal%%$'\n'*}"
    fi
}

# launch_server COMMAND...: COMMAND must end up exec'ing the server, so that
# $! is the server's own process ID. Its output goes to server.out and
# server.err, or NAME.out and NAME.err with SERVER_NAME=NAME (a test that
# runs two servers at once).
launch_server() {
    SERVER_OUT=$BATS_TEST_TMPDIR/${SERVER_NAME:-server}.out
    SERVER_ERR=$BATS_TEST_TMPDIR/${SERVER_NAME:-server}.err
    : >"$SERVER_OUT"
    # 3>&-: bats waits for every process holding its descriptor 3.
    "$@" >"$SERVER_OUT" 2>"$SERVER_ERR" 3>&- &
    SERVER_PID=$!
    if ! wait_for_line "$SERVER_OUT" "listening on "; then
        echo "no ready line from the server; its stderr:"
        cat "$SERVER_ERR"
        return 1
    fi
    local ready
    ready=$(head -n 1 "$SERVER_OUT")
    if [[ ! $ready =~ ^listening\ on\ .+:([0-9]+)$ ]]; then
        echo "unexpected first line: $ready"
        return 1
    fi
    SERVER_PORT=${BASH_REMATCH[1]}
}

# stop_server [SIGNAL]: sends SIGNAL (default TERM), waits for the exit and
# sets SERVER_STATUS. Fails if the server does not exit in time.
stop_server() {
    local signal=${1:-TERM}
    [[ -n $SERVER_PID ]] || return 0
    kill -s "$signal" "$SERVER_PID" 2>/dev/null || true
    if ! wait_for_exit "$SERVER_PID"; then
        kill -s KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
        echo "the server did not exit within $WAIT_SECONDS s of SIG$signal"
        return 1
    fi
    SERVER_STATUS=0
    wait "$SERVER_PID" || SERVER_STATUS=$?
    SERVER_PID=
}

server_is_running() {
    [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null
}

# stop_and_wait PID: sends SIGSTOP and returns once the process is stopped,
# so that it does nothing more until SIGCONT.
stop_and_wait() {
    kill -s STOP "$1"
    wait_for_process_state "$1" T
}

# poll_until SECONDS WHAT COMMAND...: for what no event announces. Runs
# COMMAND every 10 ms until it succeeds, for at most SECONDS by the clock;
# else says that WHAT was expected and fails. The clock, not a count of
# looks: on a busy machine a look may take a tenth of a second or more.
# EPOCHREALTIME without its decimal point: now, in microseconds.
poll_until() {
    local seconds=$1 what=$2 deadline=$((${EPOCHREALTIME//[!0-9]/} + $1 * 1000000))
    shift 2
    until "$@"; do
        if ((${EPOCHREALTIME//[!0-9]/} > deadline)); then
            echo "expected $what within $seconds s; it did not happen"
            return 1
        fi
        sleep 0.01
    done
}

# wait_for_process_state PID STATE: returns once process PID is in STATE
# (the letter in /proc/PID/stat: T stopped, S asleep, R running).
wait_for_process_state() {
    poll_until "$WAIT_SECONDS" "process $1 to reach state $2" process_in_state "$1" "$2"
}

process_in_state() {
    local stat
    stat=$(<"/proc/$1/stat") && [[ ${stat##*) } == "$2"* ]]
}

# wait_for_fin_at_server: returns once one of the server's connections has
# its client's FIN (TCP state CLOSE_WAIT): every byte the client sent has
# reached the server's kernel, and the FIN after them, though the server
# may not have read them yet.
wait_for_fin_at_server() {
    poll_until "$WAIT_SECONDS" "a connection to port $SERVER_PORT in CLOSE_WAIT" \
        server_has_a_connection_in "$CLOSE_WAIT" || {
        echo "its client's FIN had not come, or the server had closed it already"
        return 1
    }
}

server_has_a_connection_in() {
    (($(server_connections_in "$1") > 0))
}

# TCP states as /proc/net/tcp writes them.
SYN_RECV=03 CLOSE_WAIT=08

# server_connections_in STATE: how many of the server's connections (local
# port SERVER_PORT) the kernel lists in STATE. Each look reads every socket
# of the machine, and a busy machine may list tens of thousands. A line:
# "  sl: LOCAL_ADDRESS:PORT REMOTE_ADDRESS:PORT STATE ...", in hexadecimal;
# grep, as a loop of `read` takes seconds over so many. A machine without
# IPv6 has no tcp6.
server_connections_in() {
    local port
    printf -v port '%04X' "$SERVER_PORT"
    cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
        grep -cE "^ *[0-9]+: [0-9A-F]+:$port [0-9A-F]+:[0-9A-F]+ $1 " || true
}

# wait_for_cpu_time PID NS: returns once process PID has used NS nanoseconds
# of CPU time (server_cpu_ns).
wait_for_cpu_time() {
    poll_until "$WAIT_SECONDS" "process $1 to use $(($2 / 1000000)) ms of CPU" cpu_time_reached "$1" "$2"
}

cpu_time_reached() {
    (($(server_cpu_ns "$1") >= $2))
}

# client ARGS...: runs the test client against the server (use with `run`),
# within WAIT_SECONDS unless ARGS give another -t.
client() {
    "$CLIENT" -p "$SERVER_PORT" -t $((WAIT_SECONDS * 1000)) "$@"
}

# spawn NAME TEXT ARGS...: starts the test client in the background, with its
# stdout in $BATS_TEST_TMPDIR/NAME.out, and waits until it prints a line
# containing TEXT (an empty TEXT: don't wait).
spawn() {
    local name=$1 text=$2
    shift 2
    local out=$BATS_TEST_TMPDIR/$name.out
    : >"$out"
    "$CLIENT" -p "$SERVER_PORT" "$@" >"$out" 2>"$BATS_TEST_TMPDIR/$name.err" 3>&- &
    SPAWNED[$name]=$!
    [[ -z $text ]] || wait_for_line "$out" "$text"
}

spawned_pid() {
    echo "${SPAWNED[$1]}"
}

spawned_output() {
    cat "$BATS_TEST_TMPDIR/$1.out"
}

# stop_spawned NAME: ends a spawned client (SIGTERM) and waits for it.
stop_spawned() {
    local pid=${SPAWNED[$1]}
    kill -s TERM "$pid" 2>/dev/null || true
    wait_for_exit "$pid" || kill -s KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "SPAWNED[$1]"
}

# Runs after every test, passed or failed: nothing may outlive it.
teardown() {
    local name
    for name in "${!SPAWNED[@]}"; do
        stop_spawned "$name"
    done
    if [[ -n $SERVER_PID ]]; then
        kill -s KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}

# field NAME: the value of NAME=VALUE in $output (the client's result line).
field() {
    local pair
    for pair in $output; do
        if [[ $pair == "$1="* ]]; then
            echo "${pair#*=}"
            return 0
        fi
    done
    echo "no field $1 in: $output" >&2
    return 1
}

# expect_asleep WHEN: fails unless the server sleeps, saying WHEN in its
# message. It looks at the server's state (/proc/PID/stat) 100 times, 10 ms
# apart. A server that waits for events is found running or waiting for a
# CPU (R) only while it has work; one that spins is found R at nearly every
# look, however busy the machine is. (The CPU time a spinning server gets
# is no such measure: it shrinks as the machine gets busier.)
expect_asleep() {
    local looks=100 runnable=0 look stat cpu_before
    cpu_before=$(server_cpu_ns)
    for ((look = 0; look < looks; look++)); do
        read -r stat <"/proc/$SERVER_PID/stat"
        [[ ${stat##*) } != R* ]] || runnable=$((runnable + 1))
        sleep 0.01
    done
    echo "$1: the server was running, or ready to, at $runnable of $looks looks" \
        "(expected: under $((looks / 2)), asleep); it used $((($(server_cpu_ns) - cpu_before) / 1000000)) ms of CPU"
    ((runnable < looks / 2))
}

# The server's resident memory, in KiB.
server_rss_kib() {
    local key value unit
    while read -r key value unit; do
        if [[ $key == VmRSS: ]]; then
            echo "$value"
            return 0
        fi
    done <"/proc/$SERVER_PID/status"
    return 1
}

# How many times the server has gone to sleep and woken up so far: its
# voluntary context switches, a count that the machine's load does not move
# (being preempted is the other, involuntary kind). The file is read in one
# go: `read` line by line seeks back between reads, and the kernel then
# makes the file anew, its lines shifted if the server's state changed
# meanwhile ("S (sleeping)" is one letter longer than "R (running)").
server_wakeups() {
    local status pattern=$'(^|\n)voluntary_ctxt_switches:[[:space:]]*([0-9]+)'
    status=$(<"/proc/$SERVER_PID/status")
    [[ $status =~ $pattern ]] || {
        echo "no voluntary_ctxt_switches in /proc/$SERVER_PID/status" >&2
        return 1
    }
    echo "${BASH_REMATCH[2]}"
}

# The CPU time the server (or process PID) has used so far, in nanoseconds
# (user + system).
server_cpu_ns() {
    local pid=${1:-$SERVER_PID} on_cpu waiting slices
    if read -r on_cpu waiting slices 2>/dev/null <"/proc/$pid/schedstat"; then
        echo "$on_cpu"
        return 0
    fi
    # Without schedstat: utime and stime, fields 14 and 15, in clock ticks.
    local stat fields
    stat=$(<"/proc/$pid/stat")
    read -r -a fields <<<"${stat##*) }"
    echo $(((fields[11] + fields[12]) * 1000000000 / $(getconf CLK_TCK)))
}

# expect_match TEXT PATTERN EXPECTED: fails unless TEXT matches the glob
# PATTERN, and then says in words what was EXPECTED and what came instead.
expect_match() {
    # shellcheck disable=SC2053 # $2 is a pattern
    [[ $1 == $2 ]] && return 0
    echo "expected $3"
    echo "got: $1"
    return 1
}

# Fails with a message unless the spy's log holds a line containing TEXT.
spy_logged() {
    grep -qF -- "$1" "$SPY_LOG" || {
        echo "the spy's log has no line with: $1"
        cat "$SPY_LOG"
        return 1
    }
}

# Fails with a message unless the log (stdout) or stderr of the server holds
# a line containing TEXT.
server_logged() {
    grep -qF -- "$1" "$SERVER_OUT" || {
        echo "the server's stdout has no line with: $1"
        cat "$SERVER_OUT"
        return 1
    }
}

server_complained() {
    grep -qF -- "$1" "$SERVER_ERR" || {
        echo "the server's stderr has no line with: $1"
        cat "$SERVER_ERR"
        return 1
    }
}
