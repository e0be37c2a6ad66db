#!/usr/bin/env bats
# Build exercise: a line-based chat server on chapter 05's selector
# (exercises/README.md; the protocol is in exercises/chat/exercise).
# `make check EX=chat` runs it against the learner's chat-server, driven by
# tests/chat-client: `script` plays steps on named connections and checks
# every line that comes back; `crowd` makes many clients talk at once and
# checks that each gets every other's lines, in order, and none of its own.
#
# Each test's name is the behaviour it checks, and a failing one says what
# came instead. Every wait has a deadline (the client's -t, WAIT_SECONDS).

CHAPTER=05-selector-abstraction
load ../helpers

CHAT=$(dirname "$SERVER")/chat-server
CHAT_CLIENT=$TESTS_DIR/chat-client

# start_chat [OPTIONS...]: the learner's chat server on a free port, ready.
# A sanitized build keeps freed memory in a quarantine, which would count
# as growth in the memory tests: none here (a plain build ignores this).
start_chat() {
    [[ -x $CHAT ]] || {
        echo "no $CHAT: does make build it?"
        return 1
    }
    launch_server env ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0" \
        "$CHAT" -p 0 "$@"
}

# chat ARGS...: the chat client against the server, within WAIT_SECONDS
# unless ARGS give another -t (use with `run`; a script comes on stdin).
chat() {
    "$CHAT_CLIENT" -p "$SERVER_PORT" -t $((WAIT_SECONDS * 1000)) "$@"
}

# play STEPS: runs a script (one step a line) and fails, showing where,
# unless every step happened as written. A script makes a few hundred round
# trips: twice the usual wait for the whole of it.
play() {
    run chat -t $((WAIT_SECONDS * 2000)) script <<<"$1"
    echo "$output"
    [ "$status" -eq 0 ]
}

# escaped TEXT: TEXT as a script step writes it.
escaped() {
    local text=${1//\\/\\\\}
    printf '%s' "${text//$'\n'/\\n}"
}

# A run of N copies of the character C.
repeated() {
    local text
    printf -v text '%*s' "$2" ''
    printf '%s' "${text// /$1}"
}

# need_descriptors N: raises the soft limit to the hard one, or skips where
# the hard limit is below N (the machine's setting, not the server's fault).
need_descriptors() {
    local hard
    hard=$(ulimit -H -n)
    [[ $hard == unlimited ]] || [ "$hard" -ge "$1" ] ||
        skip "needs $1 descriptors; the hard limit here (ulimit -Hn) is $hard"
    ulimit -n "$hard"
}

@test "make builds chat-server" {
    [ -x "$CHAT" ] || {
        echo "no $CHAT: add chat.c and a chat-server rule to the Makefile's all"
        return 1
    }
}

@test "-h prints the usage on stdout; usage errors exit 2 with the usage on stderr" {
    [ -x "$CHAT" ]
    run "$CHAT" -h
    [ "$status" -eq 0 ]
    [[ ${lines[0]} == "usage: chat-server"* ]]
    local args
    for args in "-x" "-p" "-p 65536" "-p 12ab" "-b no-such-backend" "extra"; do
        run --separate-stderr timeout "$WAIT_SECONDS" bash -c "exec \"\$0\" $args" "$CHAT"
        echo "chat-server $args: status $status"
        [ "$status" -eq 2 ]
        [ -z "$output" ]
        [[ $stderr == *"usage: chat-server"* ]]
    done
}

@test "the ready line, a greeting naming the client, and the logs of each connection" {
    start_chat
    [[ $(head -n 1 "$SERVER_OUT") == "listening on 127.0.0.1:$SERVER_PORT" ]]
    play "A!"
    wait_for_line "$SERVER_OUT" "closed connection from 127.0.0.1:"
    server_logged "accepted connection from 127.0.0.1:"
}

@test "a line goes to every other client, prefixed with its sender, never back to the sender" {
    start_chat
    play "A> Hello, everyone\n
B< {A}: Hello, everyone
C< {A}: Hello, everyone
B> hi A
B> \n
A< {B}: hi A
C< {B}: hi A
C> and an empty line:\n\n
A< {C}: and an empty line:
A< {C}: 
B< {C}: and an empty line:
B< {C}: "
}

# A sends TEXT (whole lines) in two writes, split at byte K; between them
# another client's line goes round, so that the server has read the first
# piece on its own. B and C must get each of A's lines whole, once.
split_steps() {
    local text=$1 k line first rest
    for ((k = 1; k < ${#text}; k++)); do
        first=${text:0:k}
        rest=${text:k}
        echo "A> $(escaped "$first")"
        # The lines that the first piece ends come before the sync.
        while [[ $first == *$'\n'* ]]; do
            line=${first%%$'\n'*}
            first=${first#*$'\n'}
            echo "B< {A}: $line"
            echo "C< {A}: $line"
        done
        echo "C> sync $k\n"
        echo "B< {C}: sync $k"
        echo "A< {C}: sync $k"
        echo "A> $(escaped "$rest")"
        rest=$first$rest
        while [[ $rest == *$'\n'* ]]; do
            line=${rest%%$'\n'*}
            rest=${rest#*$'\n'}
            echo "B< {A}: $line"
            echo "C< {A}: $line"
        done
    done
}

@test "framing: lines split at every byte boundary arrive whole, on every backend" {
    local backend steps
    steps=$(split_steps $'Hello, chat!\nA second line\n')
    for backend in select poll epoll; do
        echo "== -b $backend"
        start_chat -b "$backend" -q
        play "$steps"
        stop_server
    done
}

@test "framing: several lines in one write arrive as several lines, in order" {
    start_chat
    play "A> one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\nten\n
B< {A}: one
B< {A}: two
B< {A}: three
B< {A}: four
B< {A}: five
B< {A}: six
B< {A}: seven
B< {A}: eight
B< {A}: nine
B< {A}: ten
B> done\n
A< {B}: done"
}

@test "a line of exactly 1024 bytes is relayed; one of 1025 gets an error line and a close, the others go on" {
    local longest over
    longest=$(repeated x 1024)
    over=$(repeated y 1025)
    start_chat
    play "A> $longest\n
B< {A}: $longest
C< {A}: $longest
A> $over\n
A< error: line too long
A.
B> after A\n
C< {B}: after A
D< {A}: $longest
D< {B}: after A
D> ${over:0:1000}
D> ${over:1000}\n
D< error: line too long
D.
B> after D\n
C< {B}: after D"
    wait_for_line "$SERVER_OUT" "line too long from 127.0.0.1:"
    server_is_running
}

@test "a client that leaves mid-line: nothing of it reaches the others, the server goes on" {
    start_chat
    play "A> half a li
A!
B> next\n
C< {B}: next
C> and on\n
B< {C}: and on"
    server_is_running
}

@test "a client that never reads is dropped with a log line, and the server's memory stays bounded" {
    start_chat
    local before after
    before=$(server_rss_kib)
    # 2 clients send 100,000 lines each (about 9 MiB for the one that never
    # reads) while reading each other's.
    run chat -t $((WAIT_SECONDS * 6000)) crowd -c 2 -n 100000 -s 1 -e $((WAIT_SECONDS * 1000))
    after=$(server_rss_kib)
    echo "$output; server RSS ${before} KiB -> ${after} KiB"
    [[ $output == *"dropped=1"* ]] || {
        echo "the client that never reads was not dropped (all it was sent is still kept for it?)"
        return 1
    }
    [ "$status" -eq 0 ]
    wait_for_line "$SERVER_OUT" "dropped slow client 127.0.0.1:"
    [ $((after - before)) -lt 4096 ] || {
        echo "the server's memory grew by $((after - before)) KiB"
        return 1
    }
}

@test "a client that never reads beside 100 active ones: they all get every line, in order, and it is dropped" {
    start_chat -q
    local before after
    before=$(server_rss_kib)
    # Each of the 100 sends 200 lines: about 900 KiB for the one that never
    # reads, far past what the kernel and a 64 KiB queue hold for it.
    run chat -t $((WAIT_SECONDS * 6000)) crowd -c 100 -n 200 -s 1 -e $((WAIT_SECONDS * 1000))
    after=$(server_rss_kib)
    echo "$output; server RSS ${before} KiB -> ${after} KiB"
    [ "$status" -eq 0 ] || {
        echo "the active clients did not all get every line in time (see above)"
        return 1
    }
    [[ $output == *"dropped=1"* ]] || {
        echo "the client that never reads was not dropped"
        return 1
    }
    [ $((after - before)) -lt 8192 ]
}

@test "1,000 clients talking at once: each gets every other's lines, in the order sent, and none of its own" {
    need_descriptors 1100
    start_chat -q
    run chat -t $((WAIT_SECONDS * 6000)) crowd -c 1000 -n 3
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "-q logs nothing per connection, not even 'line too long'" {
    start_chat -q
    play "A> $(repeated z 1100)\n
A< error: line too long
A.
B!"
    stop_server
    [ "$SERVER_STATUS" -eq 0 ]
    cat "$SERVER_OUT"
    [ "$(wc -l <"$SERVER_OUT")" -eq 2 ]
    [ "$(tail -n 1 "$SERVER_OUT")" = "shutting down" ]
}

# chat_in_background NAME STEPS: a script client in the background (its
# output in $BATS_TEST_TMPDIR/NAME.out), stopped by teardown if need be.
chat_in_background() {
    "$CHAT_CLIENT" -p "$SERVER_PORT" -t $((WAIT_SECONDS * 4000)) script <<<"$2" \
        >"$BATS_TEST_TMPDIR/$1.out" 2>&1 3>&- &
    SPAWNED[$1]=$!
}

@test "SIGTERM and SIGINT: 'shutting down', every connection closed, exit 0" {
    local signal
    for signal in TERM INT; do
        start_chat
        # Three clients that wait for a line that never comes.
        chat_in_background waiting "A< (nothing)
B< (nothing)
C< (nothing)"
        wait_for_lines "$SERVER_OUT" "accepted connection from" 3
        stop_server "$signal"
        cat "$SERVER_OUT"
        [ "$SERVER_STATUS" -eq 0 ]
        [ "$(sed -n '/^shutting down$/,$p' "$SERVER_OUT" | grep -c '^closed connection from')" -eq 3 ] || {
            echo "after 'shutting down', not every connection was logged as closed"
            return 1
        }
        stop_spawned waiting
    done
}
