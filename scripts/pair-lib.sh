# Shared by the paired benchmark scripts that start servers of their own (bench-two-pair,
# bench-tar-pair, bench-cold-pair, bench-threeway-pair); sourced after `set -euo pipefail`.

# pair_init NAME: into the repository, a work directory $W under target/bench with a password
# file; on exit every server pair_serve started is stopped and $W removed.
pair_init() {
    cd "$(dirname "$0")/.."
    mkdir -p target/bench
    W=$(mktemp -d "$PWD/target/bench/$1.XXXX")
    printf '%s-pw' "$1" > "$W/pw"
    pair_pids=()
    trap 'kill "${pair_pids[@]}" 2> /dev/null || true; rm -rf "$W"' EXIT
}

# pair_serve BIN PORT NAME TREE: `BIN serve` on 127.0.0.1:PORT with data directory $W/NAME,
# exporting TREE, logging to $W/NAME.log; returns once it listens, its pid in $served.
pair_serve() {
    : > "$W/$3.log"
    "$1" serve --listen "127.0.0.1:$2" --data-dir "$W/$3" --export "$4" --user ndmp \
        --password-file "$W/pw" > "$W/$3.log" 2>&1 &
    served=$!
    pair_pids+=("$served")
    for _ in $(seq 100); do grep -q listening "$W/$3.log" && return; sleep 0.1; done
    echo "$0: the server on port $2 did not start:" >&2
    cat "$W/$3.log" >&2
    exit 1
}

# ticks PID: the process's CPU time so far (user + sys), in clock ticks
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
