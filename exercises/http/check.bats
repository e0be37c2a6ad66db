#!/usr/bin/env bats
# Build exercise: an HTTP/1.1 file server on chapter 05's selector
# (exercises/README.md). `make check EX=http` runs it against the learner's
# copy: httpd serves a directory made here, and tests/http-client sends it
# raw bytes -- split anywhere, pipelined, malformed, slow -- and reads what
# comes back (http-client.c says how).

CHAPTER=05-selector-abstraction
load ../helpers

HTTPD=$(dirname "$SERVER")/httpd
HTTP_CLIENT=$TESTS_DIR/http-client
MiB=$((1024 * 1024))
BIG_SIZE=$((32 * MiB))

# The served directory, made once: a few small files, a large one, and a
# secret beside it (outside) with two symbolic links pointing out to it.
setup_file() {
    export SITE=$BATS_FILE_TMPDIR/site SECRET=$BATS_FILE_TMPDIR/secret.txt
    mkdir -p "$SITE/sub"
    printf 'hello\n' >"$SITE/a.txt"
    printf 'b\n' >"$SITE/sub/b.txt"
    printf 'spaced\n' >"$SITE/with space.txt"
    printf '<h1>index</h1>\n' >"$SITE/index.html"
    head -c "$BIG_SIZE" /dev/urandom >"$SITE/big.bin"
    printf 'TOPSECRET\n' >"$SECRET"
    ln -s ../secret.txt "$SITE/link"
    ln -s .. "$SITE/up"
}

# start_httpd [OPTIONS...]: the learner's httpd on a free port, serving SITE.
# -T 3600 unless OPTIONS say otherwise: where a test waits for the server to
# close a connection, only the behaviour it checks may close it.
start_httpd() {
    [[ -x $HTTPD ]] || {
        echo "no $HTTPD: does make build it?"
        return 1
    }
    launch_server "$HTTPD" -p 0 -T 3600 "$@" "$SITE"
}

# req METHOD TARGET [HEADER...]: an HTTP/1.1 request, as raw bytes.
req() {
    local method=$1 target=$2 header
    shift 2
    printf '%s %s HTTP/1.1\r\nHost: test\r\n' "$method" "$target"
    for header in "$@"; do printf '%s\r\n' "$header"; done
    printf '\r\n'
}

# exchange [OPTIONS...] < REQUESTS: http-client against the server, within
# WAIT_SECONDS (use with run). The bodies go to BODIES.
setup() {
    BODIES=$BATS_TEST_TMPDIR/bodies
}
exchange() {
    "$HTTP_CLIENT" -p "$SERVER_PORT" -t $((WAIT_SECONDS * 1000)) -o "$BODIES" "$@"
}

# responses_are PATTERN...: the responses were these ("status=200
# length=6" each, a glob), in this order, and no more.
responses_are() {
    local got want lines i
    got=$(grep '^response=' <<<"$output" | cut -d ' ' -f 2-3)
    want=$(printf '%s\n' "$@")
    mapfile -t lines <<<"$got"
    if ((${#lines[@]} == $#)); then
        for ((i = 1; i <= $#; i++)); do
            # shellcheck disable=SC2053 # a glob, on purpose
            [[ ${lines[i - 1]} == ${!i} ]] || break
        done
        ((i > $#)) && return 0
    fi
    echo "the responses expected, in order:"
    echo "$want"
    echo "the responses that came:"
    echo "${got:-(none)}"
    echo "(http-client's output: $output)"
    return 1
}

# bodies_are FILE...: the bodies received were these files' contents,
# one after another.
bodies_are() {
    cat "$@" >"$BATS_TEST_TMPDIR/expected"
    cmp "$BATS_TEST_TMPDIR/expected" "$BODIES" && return 0
    echo "the bodies received are not the files' contents (sizes:" \
        "$(wc -c <"$BODIES") received, $(wc -c <"$BATS_TEST_TMPDIR/expected") expected)"
    return 1
}

# because WORDS...: says why a test fails, and fails.
because() {
    echo "$*"
    return 1
}

# closed_by_server: http-client saw the server close the connection.
closed_by_server() {
    [[ $(field closed) == 1 ]] && return 0
    echo "the server did not close the connection ($output)"
    return 1
}

# spawn_http NAME TEXT OPTIONS... < REQUESTS: http-client in the background,
# its output in $BATS_TEST_TMPDIR/NAME.out, waited for until it prints a
# line containing TEXT. teardown stops it, as spawn's clients.
spawn_http() {
    local name=$1 text=$2 out=$BATS_TEST_TMPDIR/$1.out
    shift 2
    : >"$out"
    # <&0: a background command's stdin would be /dev/null otherwise.
    "$HTTP_CLIENT" -p "$SERVER_PORT" -t $((WAIT_SECONDS * 1000)) "$@" <&0 >"$out" 3>&- &
    SPAWNED[$name]=$!
    [[ -z $text ]] || wait_for_line "$out" "$text"
}

@test "make builds httpd" {
    [ -x "$HTTPD" ]
}

@test "usage errors: exit 2 with the usage on stderr; a directory that is not there: exit 1" {
    [ -x "$HTTPD" ]
    local args
    for args in "" "-T 0 SITE" "-T x SITE" "-T" "-x SITE" "SITE extra" "-p 70000 SITE"; do
        run --separate-stderr timeout "$WAIT_SECONDS" bash -c "exec \"\$0\" ${args//SITE/\"$SITE\"}" "$HTTPD"
        echo "httpd $args: status $status"
        [ "$status" -eq 2 ]
        [[ $stderr == *"usage: httpd"* ]]
    done
    run --separate-stderr timeout "$WAIT_SECONDS" "$HTTPD" -p 0 "$SITE/no-such-directory"
    echo "httpd $SITE/no-such-directory: status $status, stderr: $stderr"
    [ "$status" -eq 1 ]
}

@test "GET: the file, its exact Content-Length, a directory's index.html, an encoded name" {
    start_httpd
    run exchange -1 < <(req GET /a.txt; req GET /sub/b.txt; req GET /with%20space.txt; req GET /)
    responses_are "status=200 length=6" "status=200 length=2" "status=200 length=7" \
        "status=200 length=15"
    bodies_are "$SITE/a.txt" "$SITE/sub/b.txt" "$SITE/with space.txt" "$SITE/index.html"
}

@test "a large file (32 MiB) arrives whole, with its exact Content-Length" {
    start_httpd
    # 32 MiB through a busy machine: a deadline of four waits.
    run exchange -t $((WAIT_SECONDS * 4000)) < <(req GET /big.bin; req GET /a.txt)
    responses_are "status=200 length=$BIG_SIZE" "status=200 length=6"
    bodies_are "$SITE/big.bin" "$SITE/a.txt"
}

@test "HEAD: the Content-Length a GET would have, and no body" {
    start_httpd
    # A body after a HEAD's head would be read as the next response.
    run exchange < <(req HEAD /big.bin; req GET /a.txt; req HEAD /a.txt; req HEAD /nope; req GET /sub/b.txt)
    responses_are "status=200 length=$BIG_SIZE" "status=200 length=6" "status=200 length=6" \
        "status=404 length=*" "status=200 length=2"
    bodies_are "$SITE/a.txt" "$SITE/sub/b.txt"
    [ "$(field extra)" -eq 0 ]
}

@test "404 for a name that is not there, and the connection stays open" {
    start_httpd
    run exchange < <(req GET /nope; req GET /sub/nope.txt; req GET /a.txt/below; req GET /a.txt)
    responses_are "status=404 length=*" "status=404 length=*" "status=404 length=*" "status=200 length=6"
}

@test "405, with Allow: GET, HEAD, for any other method" {
    start_httpd
    local method
    for method in POST PUT DELETE OPTIONS BREW; do
        run exchange -n 1 < <(req "$method" /a.txt)
        echo "$method: $output"
        [[ $output == *"status=405 "* ]] || because "$method was not answered 405"
        [[ $output == *"allow="* ]] || because "no Allow header"
        local allow=${output##*allow=}
        allow=,${allow%%$'\n'*},
        [[ $allow == *,GET,* && $allow == *,HEAD,* ]]
    done
}

@test "400 for a malformed request, then the server closes the connection" {
    start_httpd
    local bad
    for bad in 'GARBAGE' 'GET /a.txt' 'GET  /a.txt HTTP/1.1' 'GET /a.txt HTTP/1.1 extra' \
        'GET a.txt HTTP/1.1' 'GET /a.txt HTTP/1.1\r\nHost x' \
        'GET /a.txt HTTP/1.1\r\nHost: test\r\nBad Name: y' 'GET /%zz HTTP/1.1\r\nHost: test' \
        'GET /a%00.txt HTTP/1.1\r\nHost: test' 'GET /a.txt HTTP/1.1'; do
        run exchange -n 1 -w < <(printf '%b\r\n\r\n' "$bad")
        echo "$bad -> $output"
        [[ $output == *"status=400 "* ]] || because "not answered 400: $bad"
        closed_by_server
    done
}

@test "a head of 8,000 bytes is served; one over 8 KiB gets 431 (or 400), then the server closes" {
    start_httpd
    local filler
    filler=$(head -c 7940 /dev/zero | tr '\0' a)
    run exchange < <(req GET /a.txt "X-Filler: $filler")
    responses_are "status=200 length=6"
    filler=$(head -c 8200 /dev/zero | tr '\0' a)
    run exchange -n 1 -w < <(req GET /a.txt "X-Filler: $filler")
    echo "over 8 KiB: $output"
    [[ $output == *"status=431 "* || $output == *"status=400 "* ]] || because "not refused with 431 or 400"
    closed_by_server
    # A head that never ends: the server must not keep it all.
    run exchange -n 1 -w < <(printf 'GET /a.txt HTTP/1.1\r\nX-Filler: '; head -c "$MiB" /dev/zero | tr '\0' a)
    echo "1 MiB without an end: $output"
    [[ $output == *"status=431 "* || $output == *"status=400 "* ]] || because "not refused with 431 or 400"
    closed_by_server
}

@test "a path that tries to leave the directory (.., encoded or not) is refused" {
    start_httpd
    local target
    for target in /../secret.txt /sub/../../secret.txt /%2e%2e/secret.txt /%2E%2E/secret.txt \
        /sub/%2e%2e/%2e%2e/secret.txt /..%2fsecret.txt /%2e%2e%2fsecret.txt \
        /sub/..%2F..%2Fsecret.txt /.%2e/secret.txt; do
        run exchange -n 1 < <(req GET "$target")
        echo "$target -> $output"
        ! grep -q TOPSECRET "$BODIES" || because "$target served a file outside the directory"
        [[ $output == *"response=1 status=4"* ]] || because "$target was not refused with a 4xx"
    done
}

@test "nothing outside the directory is served through a symbolic link" {
    start_httpd
    local target
    for target in /link /up/secret.txt; do
        run exchange -n 1 < <(req GET "$target")
        echo "$target -> $output"
        ! grep -q TOPSECRET "$BODIES" || because "$target served a file outside the directory"
        [[ $output == *"response=1 status=4"* ]] || because "$target was not refused with a 4xx"
    done
}

@test "pipelined requests, all in one write, are answered in order" {
    start_httpd
    # The 404's body, whatever its text, to compare with.
    run exchange < <(req GET /nope)
    mv "$BODIES" "$BATS_TEST_TMPDIR/404"
    local i expected=() files=()
    for ((i = 0; i < 15; i++)); do
        req GET /a.txt
        req HEAD /big.bin
        req GET /nope
        req GET /sub/b.txt
    done >"$BATS_TEST_TMPDIR/requests"
    run exchange <"$BATS_TEST_TMPDIR/requests"
    for ((i = 0; i < 15; i++)); do
        expected+=("status=200 length=6" "status=200 length=$BIG_SIZE" "status=404 length=*"
            "status=200 length=2")
        files+=("$SITE/a.txt" "$BATS_TEST_TMPDIR/404" "$SITE/sub/b.txt")
    done
    responses_are "${expected[@]}"
    bodies_are "${files[@]}"
}

@test "pipelined requests beyond what one read holds (16 KiB of them) are all answered in order" {
    start_httpd
    local i
    for ((i = 0; i < 200; i++)); do
        req GET /a.txt
        req GET /sub/b.txt
    done >"$BATS_TEST_TMPDIR/requests"
    run exchange <"$BATS_TEST_TMPDIR/requests"
    echo "$(grep -c '^response=' <<<"$output") responses; $(tail -n 1 <<<"$output")"
    [ "$status" -eq 0 ] || because "not every request was answered in time, or a response was malformed"
    [ "$(field responses)" -eq 400 ]
    for ((i = 0; i < 200; i++)); do printf 'hello\nb\n'; done >"$BATS_TEST_TMPDIR/want"
    bodies_are "$BATS_TEST_TMPDIR/want"
}

@test "pipelined requests split at every byte boundary are each answered once, in order" {
    start_httpd
    { req GET /a.txt; req HEAD /big.bin; req GET /sub/b.txt; } >"$BATS_TEST_TMPDIR/requests"
    # In one piece first, checked; then split after each byte in turn,
    # every split on a new connection, all in one run of http-client,
    # which compares each output (the bodies' hash included) with the
    # whole's.
    run exchange -a <"$BATS_TEST_TMPDIR/requests"
    [[ $output != *"split after"* ]] ||
        because "a split request was answered otherwise than the whole: split after${output#*split after}"
    responses_are "status=200 length=6" "status=200 length=$BIG_SIZE" "status=200 length=2"
    bodies_are "$SITE/a.txt" "$SITE/sub/b.txt"
    [[ $output == *"differ=0"* ]]
}

@test "a request that arrives one byte at a time" {
    start_httpd
    run exchange -e 1 -g 2 < <(req GET /a.txt "User-Agent: one byte at a time")
    responses_are "status=200 length=6"
    bodies_are "$SITE/a.txt"
}

@test "keep-alive: 60 requests, one after another, on one connection" {
    start_httpd
    local i
    for ((i = 0; i < 20; i++)); do
        req GET /a.txt
        req HEAD /a.txt
        req GET /sub/b.txt
    done >"$BATS_TEST_TMPDIR/requests"
    # 60 round trips, each waiting for the scheduler twice on a busy
    # machine: a deadline of four waits, not one.
    run exchange -1 -t $((WAIT_SECONDS * 4000)) <"$BATS_TEST_TMPDIR/requests"
    echo "$(tail -n 1 <<<"$output")"
    [ "$status" -eq 0 ] || because "not every request was answered in time, or a response was malformed"
    [ "$(field responses)" -eq 60 ]
    [ "$(field closed)" -eq 0 ] || because "the server closed the connection"
    for ((i = 0; i < 20; i++)); do printf 'hello\nb\n'; done >"$BATS_TEST_TMPDIR/want"
    bodies_are "$BATS_TEST_TMPDIR/want"
}

@test "Connection: close is honoured: one response, then the server closes" {
    start_httpd
    # The request after it must not be answered.
    run exchange -n 1 -w < <(req GET /a.txt "Connection: close"; req GET /sub/b.txt)
    responses_are "status=200 length=6"
    bodies_are "$SITE/a.txt"
    closed_by_server
    [ "$(field extra)" -eq 0 ] || because "more bytes came after the response"
}

@test "HTTP/1.0 is honoured: one response, then the server closes" {
    start_httpd
    run exchange -n 1 -w < <(printf 'GET /a.txt HTTP/1.0\r\n\r\n')
    responses_are "status=200 length=6"
    bodies_are "$SITE/a.txt"
    closed_by_server
}

@test "-T: a head sent a byte at a time (slowloris) is closed after the timeout, not before" {
    start_httpd -T 1
    # A byte every 100 ms: never silent for a second, but the whole head
    # would take 8 s. Bytes that trickle in must not keep it open.
    local since waited
    since=$(now_ms)
    run "$HTTP_CLIENT" -p "$SERVER_PORT" -t 20000 -e 1 -g 100 -n 1 \
        < <(req GET /a.txt "User-Agent: $(printf '%60s' '' | tr ' ' s)")
    waited=$(($(now_ms) - since))
    echo "$output; closed after $waited ms"
    [[ $output != *"status=200"* ]] || because "the slow head was answered: nothing closed it in time"
    closed_by_server
    ((waited >= 1000)) || because "closed before the timeout of 1 s"
    server_is_running
}

@test "-T: idle connections are closed after the timeout, not before, each of them" {
    start_httpd -T 1
    local since waited
    since=$(now_ms)
    # A first one, then a second: a new connection must not make the
    # server forget the first's deadline.
    spawn_http first "" -n 0 -w </dev/null
    wait_for_line "$SERVER_OUT" "accepted connection from"
    run exchange -n 0 -w </dev/null
    waited=$(($(now_ms) - since))
    echo "$output; closed after $waited ms"
    closed_by_server
    ((waited >= 1000)) || because "closed before the timeout of 1 s"
    wait_for_exit "$(spawned_pid first)" || because "the first idle connection was not closed"
    output=$(spawned_output first)
    closed_by_server
}

@test "a client that never reads a large file: the server's memory stays bounded, others are served" {
    start_httpd
    run exchange < <(req GET /a.txt) # the server warmed up
    local rss_before rss_after
    rss_before=$(server_rss_kib)
    spawn_http hog "holding" -s 65536 < <(req GET /big.bin)
    rss_after=$(server_rss_kib)
    echo "server RSS ${rss_before} KiB -> ${rss_after} KiB, with $((BIG_SIZE / 1024)) KiB to send"
    ((rss_after - rss_before < BIG_SIZE / 1024 / 2)) ||
        because "the server grew by half the file or more: it holds what the client does not read"
    run exchange < <(req GET /a.txt)
    responses_are "status=200 length=6"
}

@test "a client that resets mid-file: the server goes on" {
    start_httpd
    run "$HTTP_CLIENT" -p "$SERVER_PORT" -t $((WAIT_SECONDS * 1000)) -s 100000 -r < <(req GET /big.bin)
    [[ $output == *"reset received="* ]]
    run exchange < <(req GET /a.txt)
    responses_are "status=200 length=6"
    server_is_running
}

@test "SIGTERM: 'shutting down', exit 0, with a client mid-file and an idle one" {
    start_httpd
    spawn_http hog "holding" -s 65536 < <(req GET /big.bin)
    spawn_http idle "" -n 0 -w </dev/null
    wait_for_lines "$SERVER_OUT" "accepted connection from" 2
    stop_server TERM
    [ "$SERVER_STATUS" -eq 0 ] || because "exit status $SERVER_STATUS"
    server_logged "shutting down"
    (($(grep -c "closed connection from" "$SERVER_OUT") == 2)) ||
        because "not every connection was closed (logged) at shut-down"
}

@test "the same answers on every backend" {
    local backend
    for backend in select poll epoll; do
        start_httpd -b "$backend"
        run exchange -c 10 < <(req GET /a.txt; req HEAD /big.bin; req GET /nope; req GET /sub/b.txt)
        echo "$backend: $output"
        [ "$(field responses)" -eq 4 ]
        [[ $output == *"status=404"* ]]
        stop_server
    done
}

@test "curl (where installed): keep-alive, HEAD, 404, 400" {
    command -v curl >/dev/null || skip "no curl on this machine"
    start_httpd
    local url=http://127.0.0.1:$SERVER_PORT
    # Two URLs, one connection: the second transfer makes no new connect.
    run curl -s --max-time "$WAIT_SECONDS" -o /dev/null -o /dev/null -w '%{http_code} %{num_connects}\n' \
        "$url/a.txt" "$url/sub/b.txt"
    echo "keep-alive: $output"
    [ "$output" = $'200 1\n200 0' ]
    run curl -s --max-time "$WAIT_SECONDS" -I "$url/a.txt"
    echo "HEAD: $output"
    [[ $output == "HTTP/1.1 200 "* ]]
    [[ ${output,,} == *"content-length: 6"* ]]
    run curl -s --max-time "$WAIT_SECONDS" -o /dev/null -w '%{http_code}' "$url/nope"
    [ "$output" = 404 ]
    run curl -s --max-time "$WAIT_SECONDS" -o /dev/null -w '%{http_code}' --request-target 'no-slash' "$url/"
    [ "$output" = 400 ]
}
