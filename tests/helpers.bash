# Helpers shared by every chapter's tests: start and stop a server, run the
# test client against it, and wait on events -- a line in a log, a process's
# exit -- always with a deadline, so that a hang fails one test, not the run.
#
# A chapter's .bats file sets CHAPTER (and, for a chapter with options,
# SERVER_ARGS) and then loads this file and contract.bash.

bats_require_minimum_version 1.5.0

TESTS_DIR=$(cd "$BATS_TEST_DIRNAME" && pwd)
ROOT=$(cd "$TESTS_DIR/.." && pwd)
CLIENT=$TESTS_DIR/client
SERVER=$ROOT/$CHAPTER/echo-server
SERVER_ARGS=("${SERVER_ARGS[@]}")

# How long to wait for anything that should happen. Sanitizer builds run
# slower, and `make test SANITIZE=1` raises it.
WAIT_SECONDS=${WAIT_SECONDS:-5}

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
    local file=$1 text=$2 seconds=${3:-$WAIT_SECONDS} line fd tail_pid found=1
    exec {fd}< <(exec timeout "$seconds" tail -n +1 -f "$file" 3>&-)
    tail_pid=$!
    while IFS= read -r -u "$fd" line; do
        if [[ $line == *"$text"* ]]; then
            found=0
            break
        fi
    done
    kill "$tail_pid" 2>/dev/null
    exec {fd}<&-
    return "$found"
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

# start_server_with_fd_limit N [OPTIONS...]: the same, with the soft and hard
# limits on open descriptors both set to N, so the server cannot raise it.
start_server_with_fd_limit() {
    local limit=$1
    shift
    launch_server bash -c 'ulimit -n "$0" && exec "$@"' "$limit" \
        "$SERVER" -p 0 "${SERVER_ARGS[@]}" "$@"
}

# launch_server COMMAND...: COMMAND must end up exec'ing the server, so that
# $! is the server's own process ID.
launch_server() {
    SERVER_OUT=$BATS_TEST_TMPDIR/server.out
    SERVER_ERR=$BATS_TEST_TMPDIR/server.err
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

# client ARGS...: runs the test client against the server (use with `run`).
client() {
    "$CLIENT" -p "$SERVER_PORT" "$@"
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

# The CPU time the server has used so far, in nanoseconds (user + system).
server_cpu_ns() {
    local on_cpu waiting slices
    if read -r on_cpu waiting slices 2>/dev/null <"/proc/$SERVER_PID/schedstat"; then
        echo "$on_cpu"
        return 0
    fi
    # Without schedstat: utime and stime, fields 14 and 15, in clock ticks.
    local stat fields
    stat=$(<"/proc/$SERVER_PID/stat")
    read -r -a fields <<<"${stat##*) }"
    echo $(((fields[11] + fields[12]) * 1000000000 / $(getconf CLK_TCK)))
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
