#!/usr/bin/env bash
# A local rkube cluster as plain processes on loopback (no Docker), for development, demos and
# tests: N servers (default 3) and M agents (default 2, process runtime).
#
#   deploy/local-cluster.sh up     [--servers N] [--agents M] [--dir DIR] [--base-port P]
#   deploy/local-cluster.sh down   [--dir DIR]
#   deploy/local-cluster.sh status [--dir DIR]
#
# `up` returns once every server is a member and every agent's node is registered, and writes the
# admin kubeconfig to DIR/kubeconfig (DIR defaults to .local-cluster/). Each server and agent
# keeps its data under DIR/<name>/ and its log in DIR/<name>.log. `up` on an existing DIR restarts
# the same cluster from its data. `down` stops everything it started and leaves the data.
#
# The binary is $RKUBE_BIN, or target/release/rkube built with `cargo build --release` if absent.
set -euo pipefail

cmd="${1:-}"
[ -n "$cmd" ] && shift
servers=3
agents=2
dir=".local-cluster"
base_port=17000
while [ $# -gt 0 ]; do
    case "$1" in
        --servers) servers="$2"; shift 2 ;;
        --agents) agents="$2"; shift 2 ;;
        --dir) dir="$2"; shift 2 ;;
        --base-port) base_port="$2"; shift 2 ;;
        *) echo "local-cluster: unknown argument $1" >&2; exit 2 ;;
    esac
done

die() { echo "local-cluster: $*" >&2; exit 1; }

rkube_bin() {
    if [ -n "${RKUBE_BIN:-}" ]; then
        echo "$RKUBE_BIN"
        return
    fi
    local root
    root="$(cd "$(dirname "$0")/.." && pwd)"
    if [ ! -x "$root/target/release/rkube" ]; then
        echo "local-cluster: building rkube (release) ..." >&2
        (cd "$root" && cargo build --release --bin rkube >&2)
    fi
    echo "$root/target/release/rkube"
}

# Wait until a command succeeds, at most $1 seconds.
wait_for() {
    local secs="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "timed out waiting for $what"
        sleep 0.2
    done
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
    local name="$1"
    shift
    if running "$dir/$name.pid"; then
        echo "local-cluster: $name already running (pid $(cat "$dir/$name.pid"))"
        return
    fi
    "$@" >>"$dir/$name.log" 2>&1 &
    echo $! >"$dir/$name.pid"
}

up() {
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    local bin
    bin="$(rkube_bin)"
    local peer1="127.0.0.1:$((base_port + 1))"
    for i in $(seq 1 "$servers"); do
        local args=(server --data-dir "$dir/server-$i" --node-id "$i"
            --listen-peer "127.0.0.1:$((base_port + i))"
            --listen-api "127.0.0.1:$((base_port + 100 + i))")
        if [ "$i" -gt 1 ]; then
            wait_for 30 "server-1's join token" test -s "$dir/server-1/join-token"
            args+=(--join "$peer1" --token "$(cat "$dir/server-1/join-token")")
        fi
        start "server-$i" "$bin" "${args[@]}"
        if [ "$i" -eq 1 ]; then
            wait_for 30 "server-1's admin kubeconfig" test -s "$dir/server-1/admin.kubeconfig"
            cp "$dir/server-1/admin.kubeconfig" "$dir/kubeconfig"
        fi
        # One server at a time: a joining server needs the previous ones to be members.
        wait_for 60 "server-$i to be a member" member_count_at_least "$bin" "$i"
    done
    # The last server's kubeconfig lists every server, so clients fail over between them.
    wait_for 30 "server-$servers's admin kubeconfig" test -s "$dir/server-$servers/admin.kubeconfig"
    cp "$dir/server-$servers/admin.kubeconfig" "$dir/kubeconfig"
    for i in $(seq 1 "$agents"); do
        "$bin" agent --help >/dev/null 2>&1 || die "this rkube binary has no agent role"
        # Each agent serves NodePorts on its own loopback address (agent-1 on 127.0.0.1).
        start "agent-$i" "$bin" agent --kubeconfig "$dir/kubeconfig" --node-name "agent-$i" \
            --data-dir "$dir/agent-$i" --proxy-address "127.0.0.$i"
    done
    for i in $(seq 1 "$agents"); do
        wait_for 60 "node agent-$i" "$bin" --kubeconfig "$dir/kubeconfig" get node "agent-$i"
    done
    echo "local-cluster: $servers server(s) and $agents agent(s) up; export RKUBECONFIG=$dir/kubeconfig"
}

member_count_at_least() {
    local bin="$1" want="$2" n
    n="$("$bin" --kubeconfig "$dir/kubeconfig" cluster members 2>/dev/null | tail -n +2 | grep -c . || true)"
    [ "${n:-0}" -ge "$want" ]
}

down() {
    [ -d "$dir" ] || { echo "local-cluster: nothing in $dir"; return; }
    local pids=()
    for f in "$dir"/*.pid; do
        [ -f "$f" ] || continue
        if running "$f"; then
            kill -TERM "$(cat "$f")" 2>/dev/null || true
            pids+=("$f")
        else
            rm -f "$f"
        fi
    done
    local deadline=$((SECONDS + 15))
    for f in "${pids[@]}"; do
        while running "$f" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        if running "$f"; then
            kill -KILL "$(cat "$f")" 2>/dev/null || true
        fi
        rm -f "$f"
    done
    echo "local-cluster: stopped ${#pids[@]} process(es); data kept in $dir"
}

status() {
    [ -d "$dir" ] || { echo "local-cluster: nothing in $dir"; return 1; }
    local any=0
    for f in "$dir"/*.pid; do
        [ -f "$f" ] || continue
        local name
        name="$(basename "$f" .pid)"
        if running "$f"; then
            echo "$name: running (pid $(cat "$f"))"
            any=1
        else
            echo "$name: stopped"
        fi
    done
    if [ "$any" -eq 1 ] && [ -f "$dir/kubeconfig" ]; then
        "$(rkube_bin)" --kubeconfig "$dir/kubeconfig" cluster members || true
    fi
}

case "$cmd" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status [--servers N] [--agents M] [--dir DIR] [--base-port P]" >&2; exit 2 ;;
esac
