#!/usr/bin/env bash
# HTTP benchmark: examples/rust/hello-http served by (a) Spore's HTTP server (the shim library's
# server, through shim/examples/serve_component.rs, release build) and (b) `wasmtime serve` 48.0.8
# (the same wasmtime as the shim), one after the other on this machine, loaded with `wrk` at 1
# and 50 connections for BENCH_HTTP_SECONDS (default 10) each. Prints req/s, p50 and p99 latency
# and the Spore/wasmtime ratio of req/s.
#
# Run it directly (`bash hack/bench-http.sh`) or source it and call `bench_http` (hack/bench.sh).
# Needs: wrk (Debian), the wasm32-wasip2 target. Builds what is missing: the guest
# (hack/build-guests.sh), the serve_component example (release), and wasmtime-cli 48.0.8 into
# .tools/wasmtime-cli (a long build, only once).

bench_http() {
    set -euo pipefail
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    local seconds=${BENCH_HTTP_SECONDS:-10}
    local wasm=$root/target/wasm32-wasip2/release/hello-http.wasm
    local spore=$root/target/release/examples/serve_component
    local wasmtime=$root/.tools/wasmtime-cli/bin/wasmtime
    local port=${BENCH_HTTP_PORT:-18080}

    command -v wrk >/dev/null || { echo "bench-http: wrk is missing (apt-get install wrk)" >&2; return 1; }
    [[ -f $wasm ]] || bash "$root/hack/build-guests.sh"
    [[ -x $spore ]] || (cd "$root" && cargo build -q --release -p spore-shim --example serve_component)
    bash "$root/hack/install-wasmtime-cli.sh"

    local results
    results=$(mktemp)
    # server name, then its command line; the server must listen on $port.
    _bench_http_one "spore" "$results" "$port" "$seconds" \
        env SPORE_STDOUT=/dev/null SPORE_STDERR=/dev/null "$spore" "$wasm" "$port"
    # The node-installer image ships the shim built for musl (static): measure that build too
    # when it exists (hack/images.sh builds the shim; this example is built the same way by
    #   CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release \
    #     --target x86_64-unknown-linux-musl -p spore-shim --example serve_component).
    local spore_musl=$root/target/x86_64-unknown-linux-musl/release/examples/serve_component
    if [[ -x $spore_musl ]]; then
        _bench_http_one "spore-musl" "$results" "$port" "$seconds" \
            env SPORE_STDOUT=/dev/null SPORE_STDERR=/dev/null "$spore_musl" "$wasm" "$port"
    fi
    _bench_http_one "wasmtime-serve" "$results" "$port" "$seconds" \
        "$wasmtime" serve -Scli --addr "127.0.0.1:$port" "$wasm"

    echo
    echo "hello-http GET /, wrk ${seconds}s per row ($(nproc) cores)"
    printf '%-16s %6s %12s %10s %10s\n' server conns req/s p50 p99
    while read -r name conns rps p50 p99; do
        printf '%-16s %6s %12s %10s %10s\n' "$name" "$conns" "$rps" "$p50" "$p99"
    done <"$results"
    local conns
    for conns in 1 50; do
        awk -v c="$conns" '
            $2 == c && $1 == "spore" { s = $3 }
            $2 == c && $1 == "wasmtime-serve" { w = $3 }
            $2 == c && $1 == "spore-musl" { m = $3 }
            END {
                if (w > 0) printf "ratio spore/wasmtime-serve at %d connections: %.2fx\n", c, s / w
                if (m > 0 && s > 0) printf "ratio spore-musl/spore (glibc) at %d connections: %.2fx\n", c, m / s
            }
        ' "$results"
    done
    rm -f "$results"
}

# Starts a server, waits for it, loads it at 1 and 50 connections, stops it.
_bench_http_one() {
    local name=$1 results=$2 port=$3 seconds=$4
    shift 4
    "$@" >/dev/null 2>"/tmp/bench-http-$name.log" &
    local pid=$!
    local tries=0
    until curl -fs -o /dev/null "http://127.0.0.1:$port/"; do
        tries=$((tries + 1))
        if ((tries > 300)) || ! kill -0 "$pid" 2>/dev/null; then
            echo "bench-http: $name did not start; see /tmp/bench-http-$name.log" >&2
            kill "$pid" 2>/dev/null || true
            return 1
        fi
        sleep 0.1
    done
    # Warm up (compiled code, pools, page cache).
    wrk -t1 -c4 -d2s "http://127.0.0.1:$port/" >/dev/null
    local conns threads out
    for conns in 1 50; do
        threads=$((conns < 2 ? 1 : 2))
        out=$(wrk -t"$threads" -c"$conns" -d"${seconds}s" --latency "http://127.0.0.1:$port/")
        echo "$out" >"/tmp/bench-http-$name-$conns.txt"
        echo "$name $conns $(echo "$out" | awk '
            /Requests\/sec/ { rps = $2 }
            $1 == "50%" { p50 = $2 }
            $1 == "99%" { p99 = $2 }
            /Non-2xx/ { bad = $NF }
            END { printf "%s %s %s", rps, p50, p99; if (bad) printf " (non-2xx: %s)", bad }
        ')" >>"$results"
    done
    kill -INT "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    bench_http "$@"
fi
