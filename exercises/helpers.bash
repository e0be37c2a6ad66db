# Loaded by each build's check.bats (exercises/NAME/check.bats), which sets
# CHAPTER first: the chapters' test helpers, tests/helpers.bash, with what
# they derive from the test file's folder pointed back at tests/. `make check`
# sets ECHO_SERVER to the learner's server.

load ../../tests/helpers

TESTS_DIR=$(cd "$BATS_TEST_DIRNAME/../../tests" && pwd)
ROOT=$(cd "$TESTS_DIR/.." && pwd)
CLIENT=$TESTS_DIR/client
SERVER=${ECHO_SERVER:-$ROOT/$CHAPTER/echo-server}

# Now in milliseconds, to time what the server does.
now_ms() {
    echo $(($(date +%s%N) / 1000000))
}

# check_usage_rejects OPTION VALUES...: "OPTION VALUE" for each value, and
# OPTION without one, are usage errors: exit 2, the usage on stderr; and the
# usage names OPTION.
check_usage_rejects() {
    local option=$1 value
    shift
    require_option "$option"
    for value in "$@" ""; do
        # A server that takes the value would run: timeout ends it.
        run --separate-stderr timeout "$WAIT_SECONDS" "$SERVER" -p 0 "$option" ${value:+"$value"}
        echo "echo-server $option $value: status $status"
        [ "$status" -eq 2 ]
        [[ $stderr == *"usage: echo-server"* ]]
    done
}

# require_option OPTION: fails at once unless the server's -h names OPTION,
# so that a server without the feature fails each test at once rather than
# on a deadline (start_server waits for a ready line that never comes).
require_option() {
    local usage
    usage=$("$SERVER" -h) || true
    [[ $usage == *"$1 "* ]] || {
        echo "$SERVER -h does not name $1 yet"
        return 1
    }
}
