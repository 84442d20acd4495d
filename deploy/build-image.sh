#!/usr/bin/env bash
# Build the rkube container image locally, without any registry: `FROM scratch` with the rkube
# binary, the shared libraries it needs (found with ldd) and a few host tools for `sh -c` and exec.
#
#   deploy/build-image.sh [--binary PATH] [--tag TAG]
#
# TAG defaults to rkube:dev. Without --binary the script runs `cargo build --release --bin rkube`
# and uses target/release/rkube (or $RKUBE_BIN when set).
#
# What is in the image:
#   /rkube                     the rkube binary, without debug info (the entrypoint; `rkube server`, `rkube agent`,
#                              `rkube demo-app`, `rkube pause`, the CLI)
#   /bin/{sh,cat,sleep,ls,env,mkdir,rm,cp,grep,hostname,kill,touch,sed,head,tail,wc,date,id}
#                              copied from this host (sh is the host's /bin/sh, dash on Debian), so
#                              containers can run `sh -c`, wait loops and exec commands
#   /lib*, /usr/lib*           the shared libraries of all of the above and the dynamic loader,
#                              at the paths ldd reports
#   /etc/passwd, /etc/group    root and nobody only
#   /tmp                       mode 1777
# Nothing else: no package manager, no CA bundle (rkube trusts only its own cluster CA).
set -euo pipefail

tag="rkube:dev"
binary="${RKUBE_BIN:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --tag) tag="$2"; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "build-image: unknown argument $1" >&2; exit 2 ;;
    esac
done

die() { echo "build-image: $*" >&2; exit 1; }

root="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "$binary" ]; then
    echo "build-image: building rkube (release) ..." >&2
    (cd "$root" && cargo build --release --bin rkube >&2)
    binary="$root/target/release/rkube"
fi
[ -x "$binary" ] || die "$binary is not an executable file"
command -v docker >/dev/null || die "docker is not installed"
command -v ldd >/dev/null || die "ldd is not installed (it finds the binary's shared libraries)"

ctx="$(mktemp -d "${TMPDIR:-/tmp}/rkube-image.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT
rootfs="$ctx/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/data"
chmod 1777 "$rootfs/tmp"

# Copy one file to the same path inside the image (following symlinks).
copy_to_image() {
    local src="$1" dest="$rootfs$1"
    [ -e "$dest" ] && return
    mkdir -p "$(dirname "$dest")"
    cp -L "$src" "$dest"
}

# The shared libraries (and the dynamic loader) an executable needs, as absolute paths.
libraries_of() {
    # Statically linked executables make ldd fail ("not a dynamic executable"): nothing to copy.
    ldd "$1" 2>/dev/null | awk '
        $2 == "=>" && $3 ~ /^\// { print $3; next }
        $1 ~ /^\// { print $1 }
    ' || true
}

add_executable() {
    local src="$1" dest="$2"
    cp -L "$src" "$rootfs$dest"
    chmod 0755 "$rootfs$dest"
    local lib
    for lib in $(libraries_of "$src"); do
        copy_to_image "$lib"
    done
}

add_executable "$binary" /rkube
# Debug information only makes the image bigger (the binary on the host keeps it).
if command -v strip >/dev/null; then
    strip --strip-debug "$rootfs/rkube"
fi
for tool in sh cat sleep ls env mkdir rm cp grep hostname kill touch sed head tail wc date id; do
    path="$(command -v "$tool" 2>/dev/null || true)"
    case "$path" in
        /*) add_executable "$path" "/bin/$tool" ;;
        # A shell builtin (kill in bash): take the executable from the usual places.
        *)
            for dir in /bin /usr/bin; do
                if [ -x "$dir/$tool" ]; then
                    add_executable "$dir/$tool" "/bin/$tool"
                    break
                fi
            done
            ;;
    esac
done
[ -x "$rootfs/bin/sh" ] || die "no /bin/sh on this host to put into the image"

cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF

version="$("$binary" --version 2>/dev/null | head -n 1 | awk '{print $2}' | tr -cd 'A-Za-z0-9._+-')"
cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
ENV PATH=/bin
LABEL org.opencontainers.image.title="rkube" \\
      org.opencontainers.image.version="${version:-unknown}" \\
      org.opencontainers.image.description="rkube built locally by deploy/build-image.sh"
WORKDIR /
ENTRYPOINT ["/rkube"]
EOF

echo "build-image: building $tag from $binary ..." >&2
# DOCKER_BUILDKIT=0: the classic builder needs nothing but the engine (no buildx, no pulls).
DOCKER_BUILDKIT=0 docker build --quiet --tag "$tag" "$ctx" 2>&1 >/dev/null \
    | { grep -v -e DEPRECATED -e 'legacy builder' -e 'BuildKit is currently disabled' \
        -e 'environment-variable' -e '^$' || true; } >&2
[ "${PIPESTATUS[0]}" -eq 0 ] || die "docker build failed"
# Check the image runs: the loader and the libraries are where the binary expects them.
docker run --rm --network none "$tag" --version >/dev/null \
    || die "the image $tag does not run (missing shared library?)"
docker run --rm --network none --entrypoint /bin/sh "$tag" -c 'cat /etc/passwd >/dev/null' \
    || die "the image $tag has no working /bin/sh"
echo "build-image: built $tag ($(docker image inspect --format '{{.Size}}' "$tag") bytes)"
