#!/usr/bin/env bash
# Builds Sluice's CPU image (deploy/Containerfile) with podman on a machine that reaches no
# container registry and runs no Docker daemon, everything under one work directory:
#
#   deploy/build-image.sh [--tag TAG] [--extras cpu,...] WORKDIR
#                                                build; prints the tag and the image size
#   deploy/build-image.sh --clean WORKDIR        remove its containers, images, storage, WORKDIR
#   WORKDIR/podman run ...                       podman on that storage (written by the build)
#
# The route (../shared/docs/CONTAINERS.md): podman, runc and debootstrap from apt (installed
# when missing; that needs root); a Debian bookworm base image made by debootstrap from the
# mirror apt already uses, imported as localhost/debian-bookworm:base; every wheel downloaded on
# the host for the image's Python (Debian's python3.11), so the build reaches no package index;
# `podman build` with runc and default ulimits (containers.conf), host networking (no bridge, no
# firewall rules) and --root/--runroot/--storage-driver on every call.
# PYTHON (default python3) is the host Python whose pip downloads the wheels.
set -euo pipefail

usage() {
    echo "usage: $0 [--tag TAG] [--extras cpu[,monitoring,...]] WORKDIR | --clean WORKDIR" >&2
    exit 2
}

TAG=""
EXTRAS=cpu
CLEAN=0
while [ $# -gt 0 ]; do
    case "$1" in
        --tag) TAG=${2:?--tag needs a value}; shift 2 ;;
        --extras) EXTRAS=${2:?--extras needs a value}; shift 2 ;;
        --clean) CLEAN=1; shift ;;
        -h|--help) usage ;;
        -*) usage ;;
        *) break ;;
    esac
done
[ $# -eq 1 ] || usage
mkdir -p "$1"
WORK=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
BASE_IMAGE=localhost/debian-bookworm:base
SUITE=bookworm
PY_VERSION=3.11  # Debian bookworm's python3

podman_() {
    CONTAINERS_CONF="$WORK/containers.conf" podman --root "$WORK/storage" \
        --runroot "$WORK/run" --tmpdir "$WORK/tmp" --storage-driver overlay "$@"
}

clean() {
    if [ -f "$WORK/containers.conf" ] && command -v podman >/dev/null; then
        podman_ rm --all --force --time 0 >/dev/null 2>&1 || true
        podman_ rmi --all --force >/dev/null 2>&1 || true
    fi
    # Overlay layers still mounted (a build killed half way) would keep rm -rf from finishing.
    if command -v findmnt >/dev/null; then
        findmnt -rn -o TARGET | { grep -F "$WORK/" || true; } | sort -r | while read -r mnt; do
            umount -l "$mnt" 2>/dev/null || true
        done
    fi
    rm -rf "$WORK"
}

if [ "$CLEAN" = 1 ]; then
    clean
    exit 0
fi

# -- tools ----------------------------------------------------------------------------------
missing=()
for tool in podman runc debootstrap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "build-image: ${missing[*]} missing and cannot be installed here (needs root and apt-get)" >&2
        exit 3
    fi
    echo "== installing ${missing[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
fi

mkdir -p "$WORK/storage" "$WORK/run" "$WORK/tmp" "$WORK/networks"
# crun cannot run on hybrid cgroup v1/v2 hosts; the default rlimits cannot be raised in some
# sandboxes; no systemd to manage cgroups or journal events.
cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$WORK/tmp/events.log"

[network]
network_config_dir = "$WORK/networks"
EOF
cat >"$WORK/podman" <<EOF
#!/bin/sh
# podman on the storage of $WORK (written by deploy/build-image.sh)
CONTAINERS_CONF="$WORK/containers.conf" exec podman --root "$WORK/storage" --runroot "$WORK/run" --tmpdir "$WORK/tmp" --storage-driver overlay "\$@"
EOF
chmod +x "$WORK/podman"

CONTEXT="$WORK/context"
ROOTFS="$WORK/rootfs"
trap 'rm -rf "$CONTEXT" "$ROOTFS"' EXIT

# -- base image: Debian from its own mirror -------------------------------------------------
mirror() {
    # the first deb URI apt uses for this suite (deb822 .sources, then one-line .list files)
    local uri
    uri=$(awk -v suite="$SUITE" '
        /^URIs:/ { uris = $2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) { print uris; exit } }
    ' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
    if [ -z "$uri" ]; then
        uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
            awk -v suite="$SUITE" '$1 == "deb" && $0 ~ " " suite " " { print ($2 ~ /^\[/ ? $3 : $2); exit }')
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

if ! podman_ image exists "$BASE_IMAGE"; then
    MIRROR=$(mirror)
    echo "== base image $BASE_IMAGE: debootstrap --variant=minbase $SUITE from $MIRROR"
    rm -rf "$ROOTFS"
    debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
        tail -n 30 "$WORK/debootstrap.log" >&2
        exit 1
    }
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
    tar -C "$ROOTFS" -c . | podman_ import - "$BASE_IMAGE" >/dev/null
    rm -rf "$ROOTFS"
fi

# -- build context: the project's files and every wheel -------------------------------------
echo "== build context and wheels for python $PY_VERSION"
rm -rf "$CONTEXT"
mkdir -p "$CONTEXT"
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    # tracked files and new ones git does not ignore (no virtualenvs, builds or .so files)
    git -C "$ROOT" ls-files -z --cached --others --exclude-standard |
        tar -C "$ROOT" --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -C "$CONTEXT" -xf -
    REVISION=$(git -C "$ROOT" rev-parse HEAD)
else
    tar -C "$ROOT" --exclude='./.git' --exclude='./.venv*' --exclude='./build' \
        --exclude='*.so' --exclude='__pycache__' -cf - . | tar -C "$CONTEXT" -xf -
    REVISION=unknown
fi
VERSION=$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$ROOT/pyproject.toml")
TAG=${TAG:-localhost/sluice:$VERSION-cpu}

# Requirements of the image: Sluice's dependencies with its extras (and the extras those name,
# such as sluice[server]), its build requirements, and pip itself (the runtime stage runs pip
# from its wheel).
"$PYTHON" - "$ROOT/pyproject.toml" "$EXTRAS" >"$WORK/requirements.txt" <<'EOF'
import re, sys, tomllib

with open(sys.argv[1], "rb") as f:
    pyproject = tomllib.load(f)
name = pyproject["project"]["name"]
optional = pyproject["project"].get("optional-dependencies", {})
own = re.compile(rf"^{re.escape(name)}\s*\[([^\]]+)\]\s*$")
lines, seen = list(pyproject["project"]["dependencies"]), set()
pending = [e.strip() for e in sys.argv[2].split(",") if e.strip()]
while pending:
    extra = pending.pop()
    if extra in seen:
        continue
    if extra not in optional:
        sys.exit(f"build-image: pyproject.toml has no extra {extra!r}")
    seen.add(extra)
    for requirement in optional[extra]:
        match = own.match(requirement.split(";")[0])
        if match:
            pending.extend(e.strip() for e in match.group(1).split(","))
        else:
            lines.append(requirement)
for line in [*lines, *pyproject["build-system"]["requires"], "pip"]:
    print(line)
EOF
ARCH=$(uname -m)
PLATFORMS=()
for minor in $(seq 36 -1 17); do  # glibc 2.36 is bookworm's; pip does not expand the tag itself
    PLATFORMS+=(--platform "manylinux_2_${minor}_${ARCH}")
done
PLATFORMS+=(--platform "manylinux2014_${ARCH}" --platform "manylinux2010_${ARCH}" --platform "manylinux1_${ARCH}")
"$PYTHON" -m pip download -q --disable-pip-version-check --dest "$CONTEXT/.wheels" \
    --only-binary=:all: --implementation cp --python-version "$PY_VERSION" \
    --abi "cp${PY_VERSION/./}" "${PLATFORMS[@]}" -r "$WORK/requirements.txt" 2>&1 |
    { grep -v "is ignored: it is neither a file nor a directory" || true; }
ls "$CONTEXT"/.wheels/pip-*.whl >/dev/null

# -- the image --------------------------------------------------------------------------------
echo "== podman build $TAG"
podman_ build --network host --format docker -f "$CONTEXT/deploy/Containerfile" \
    --build-arg "BASE=$BASE_IMAGE" --build-arg "EXTRAS=$EXTRAS" --build-arg "VERSION=$VERSION" \
    --build-arg "REVISION=$REVISION" --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    -t "$TAG" "$CONTEXT"
# the builder stage is an untagged image once the build is done
podman_ image prune --force >/dev/null
SIZE=$(podman_ image inspect --format '{{.Size}}' "$TAG")
echo "built $TAG: $SIZE bytes ($((SIZE / 1000000)) MB uncompressed)"
