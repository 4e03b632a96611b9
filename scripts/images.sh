#!/usr/bin/env bash
# Builds the images the Dockerfile, compose.yaml and the container tests
# name, from Debian's packages and the Go module proxy only, and tags them
# with those names, so the same files work on a machine where Docker runs
# but no registry can be reached:
#   debian:bookworm-slim   debootstrap (minbase) into a directory, docker import
#   golang:1.X-bookworm    the Go toolchain module, verified by `go mod download`
#   postgres:15-bookworm   Debian's postgresql-15
#   cardvault:dev          the vault image (Dockerfile), rebuilt every run
# Safe to run twice: a base image that exists is reused. --base-only skips
# the vault image.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

go_version=$(awk '$1 == "go" {print $2}' go.mod)
debian_image=debian:bookworm-slim
go_image=golang:${go_version%.*}-bookworm
pg_image=postgres:15-bookworm
vault_image=${CARDVAULT_IMAGE:-cardvault:dev}

have() { docker image inspect "$1" >/dev/null 2>&1; }
work=$(mktemp -d /tmp/cardvault-images.XXXXXX)
trap 'rm -rf "$work"' EXIT

if ! have "$debian_image"; then
  echo "== $debian_image (debootstrap)"
  debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  rm -rf "$work"/rootfs/var/lib/apt/lists/* "$work"/rootfs/var/cache/apt/*.bin
  tar -C "$work/rootfs" -c . | docker import --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$debian_image" >/dev/null
fi

if ! have "$go_image"; then
  echo "== $go_image (Go toolchain module go$go_version)"
  toolchain="golang.org/toolchain@v0.0.1-go$go_version.linux-amd64"
  # go mod download checks the module against the checksum database.
  dir=$(cd "$work" && GOFLAGS=-modcacherw GOMODCACHE="$work/modcache" go mod download -json "$toolchain" | jq -r .Dir)
  mkdir -p "$work/golang"
  cp -a "$dir" "$work/golang/go"
  # Module zips carry no file modes; the go command restores these itself
  # when it switches toolchains, and so must we.
  chmod -R u+w,a+rX "$work/golang/go"
  chmod a+x "$work"/golang/go/bin/* "$work"/golang/go/pkg/tool/*/*
  cp images/golang.Dockerfile "$work/golang/Dockerfile"
  docker build -q -t "$go_image" "$work/golang" >/dev/null
fi

if ! have "$pg_image"; then
  echo "== $pg_image (Debian postgresql-15)"
  docker build -q -t "$pg_image" -f images/postgres.Dockerfile images >/dev/null
fi

if [ "${1:-}" != --base-only ]; then
  echo "== $vault_image"
  # The context is the work tree's files (tracked, and untracked but not
  # ignored) with the modules vendored on the host: containers here cannot
  # reach the module proxy, and `go mod vendor` takes them from the
  # module cache, verified against go.sum.
  mkdir -p "$work/src"
  git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && cp --parents -- "$f" "$work/src/"
  done
  # -e: a Windows-only dependency of the Docker client (go-ansiterm) is at a
  # version the proxy does not serve; nothing built here needs it.
  (cd "$work/src" && go mod vendor -e 2>/dev/null)
  docker build -q -t "$vault_image" "$work/src" >/dev/null
fi
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "^(debian|golang|postgres|cardvault)" || true
