#!/usr/bin/env bash
# The docker compose deployment of rkube (deploy/docker-compose.yml): three servers and three
# agents in containers on a private network.
#
#   deploy/compose.sh up         [--project P] [--dir DIR] [--port-offset N | --random-ports]
#                                [--image TAG] [--build] [--binary PATH]
#   deploy/compose.sh down       [--project P] [--volumes]
#   deploy/compose.sh status     [--project P]
#   deploy/compose.sh kubeconfig [--project P] [--dir DIR]
#   deploy/compose.sh leader     [--project P]
#
# `up` builds the image with deploy/build-image.sh when it does not exist yet (or with --build),
# starts the containers, returns once 3 servers are members and 3 nodes are registered, and
# writes the admin kubeconfig for the host to DIR/kubeconfig (default deploy/.compose/, listing
# the servers' API ports published on 127.0.0.1). `down` removes the containers and the network
# and keeps the data volumes unless --volumes is given. `status` shows the containers and the
# cluster's members. `leader` prints the service name of the Raft leader (e.g. server-1).
# `--port-offset N` moves every published host port by N (API 16441-16443, node ports
# 30000-30009 / 31000-31009 / 32000-32009), to run several projects side by side;
# `--random-ports` lets Docker pick free host ports instead (`status` and the kubeconfig show
# them). RKUBE_SERVER_FLAGS / RKUBE_AGENT_FLAGS in the environment add flags to every server /
# agent (see docker-compose.yml).
#
# Works with the `docker compose` plugin or the standalone `docker-compose`.
set -euo pipefail

cmd="${1:-}"
[ -n "$cmd" ] && shift
here="$(cd "$(dirname "$0")" && pwd)"
project="rkube"
dir="$here/.compose"
offset=0
random_ports=0
image="rkube:dev"
build=0
binary=""
volumes=0
while [ $# -gt 0 ]; do
    case "$1" in
        --project) project="$2"; shift 2 ;;
        --dir) dir="$2"; shift 2 ;;
        --port-offset) offset="$2"; shift 2 ;;
        --random-ports) random_ports=1; shift ;;
        --image) image="$2"; shift 2 ;;
        --build) build=1; shift ;;
        --binary) binary="$2"; shift 2 ;;
        --volumes) volumes=1; shift ;;
        *) echo "compose: unknown argument $1" >&2; exit 2 ;;
    esac
done

die() { echo "compose: $*" >&2; exit 1; }

export RKUBE_IMAGE="$image"
export RKUBE_API_PORT_1=$((16441 + offset)) RKUBE_API_PORT_2=$((16442 + offset))
export RKUBE_API_PORT_3=$((16443 + offset))
export RKUBE_NODEPORTS_1="$((30000 + offset))-$((30009 + offset))"
export RKUBE_NODEPORTS_2="$((31000 + offset))-$((31009 + offset))"
export RKUBE_NODEPORTS_3="$((32000 + offset))-$((32009 + offset))"
if [ "$random_ports" -eq 1 ]; then
    # Empty (but set): docker-compose.yml then publishes on host ports Docker chooses.
    export RKUBE_API_PORT_1="" RKUBE_API_PORT_2="" RKUBE_API_PORT_3=""
    export RKUBE_NODEPORTS_1="" RKUBE_NODEPORTS_2="" RKUBE_NODEPORTS_3=""
fi

# `docker compose` (the plugin) when present, else `docker-compose`.
compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose -p "$project" -f "$here/docker-compose.yml" "$@"
    elif command -v docker-compose >/dev/null; then
        docker-compose -p "$project" -f "$here/docker-compose.yml" "$@"
    else
        die "neither 'docker compose' nor 'docker-compose' is installed"
    fi
}

# The container id of a service, empty when it has none.
container() { compose ps -q "$1" 2>/dev/null | head -n 1; }

running() {
    local id
    id="$(container "$1")"
    [ -n "$id" ] && [ "$(docker inspect -f '{{.State.Running}}' "$id" 2>/dev/null)" = true ]
}

# Run the rkube CLI inside the first running server, with that server's admin kubeconfig.
in_server() {
    local s
    for s in server-3 server-2 server-1; do
        if running "$s"; then
            docker exec "$(container "$s")" /rkube --kubeconfig /data/admin.kubeconfig "$@"
            return
        fi
    done
    echo "compose: no server container is running" >&2
    return 1
}

wait_for() {
    local secs="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || die "timed out waiting for $what"
        sleep 0.5
    done
}

count_at_least() {
    local want="$1" n
    shift
    n="$(in_server "$@" 2>/dev/null | tail -n +2 | grep -c . || true)"
    [ "${n:-0}" -ge "$want" ]
}

ready_nodes_at_least() {
    local want="$1" n
    n="$(in_server get nodes 2>/dev/null | awk 'NR > 1 && $2 == "Ready"' | grep -c . || true)"
    [ "${n:-0}" -ge "$want" ]
}

# The host address (127.0.0.1:PORT) a service's container port is published on.
published() {
    local id addr
    id="$(container "$1")"
    [ -n "$id" ] || die "$1 has no container (run '$0 up')"
    addr="$(docker port "$id" "$2/tcp" | grep -m1 '^127\.0\.0\.1:')" \
        || die "$1 does not publish port $2 on 127.0.0.1"
    echo "$addr"
}

kubeconfig() {
    mkdir -p "$dir"
    local id raw
    id="$(container server-3)"
    [ -n "$id" ] || die "server-3 has no container (run '$0 up')"
    raw="$(docker exec "$id" cat /data/admin.kubeconfig)" \
        || die "cannot read server-3's admin kubeconfig"
    # The servers advertise their in-network names; the host reaches them on published ports.
    local p1 p2 p3
    p1="$(published server-1 6443)" p2="$(published server-2 6443)" p3="$(published server-3 6443)"
    printf '%s\n' "$raw" | sed \
        -e "s|https://server-1:6443|https://$p1|g" \
        -e "s|https://server-2:6443|https://$p2|g" \
        -e "s|https://server-3:6443|https://$p3|g" \
        >"$dir/kubeconfig.tmp"
    chmod 600 "$dir/kubeconfig.tmp"
    mv "$dir/kubeconfig.tmp" "$dir/kubeconfig"
    echo "$dir/kubeconfig"
}

up() {
    command -v docker >/dev/null || die "docker is not installed"
    if [ "$build" -eq 1 ] || ! docker image inspect "$image" >/dev/null 2>&1; then
        local args=(--tag "$image")
        [ -n "$binary" ] && args+=(--binary "$binary")
        "$here/build-image.sh" "${args[@]}"
    fi
    # `up` waits for each server's health check before starting what depends on it.
    compose up -d
    wait_for 120 "3 members" count_at_least 3 cluster members
    wait_for 120 "3 Ready nodes" ready_nodes_at_least 3
    local path
    path="$(kubeconfig)"
    echo "compose: 3 servers and 3 agents up (project $project); export RKUBECONFIG=$path"
    echo "compose: API on $(published server-1 6443), $(published server-2 6443)," \
        "$(published server-3 6443); node port 30000 of agent-1, 2, 3 on" \
        "$(published agent-1 30000), $(published agent-2 30000), $(published agent-3 30000)" \
        "(30001-30009 alike)"
}

down() {
    if [ "$volumes" -eq 1 ]; then
        compose down --volumes --remove-orphans
    else
        compose down --remove-orphans
    fi
}

status() {
    docker ps -a --filter "label=com.docker.compose.project=$project" \
        --format 'table {{.Label "com.docker.compose.service"}}\t{{.Status}}\t{{.Names}}' \
        | { IFS= read -r header; echo "$header"; sort; }
    in_server cluster members || true
}

leader() {
    local line
    line="$(in_server cluster members | awk 'NR > 1 && $5 == "true" { print $3 }')"
    [ -n "$line" ] || die "no leader (an election may be under way)"
    # The API address is server-N:6443: the service name is the host part.
    echo "${line%%:*}"
}

case "$cmd" in
    up) up ;;
    down) down ;;
    status) status ;;
    kubeconfig) kubeconfig ;;
    leader) leader ;;
    *) echo "usage: $0 up|down|status|kubeconfig|leader [--project P] [--dir DIR] [--port-offset N | --random-ports] [--image TAG] [--build] [--binary PATH] [--volumes]" >&2; exit 2 ;;
esac
