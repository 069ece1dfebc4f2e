#!/usr/bin/env bash
# Builds a static kube-apiserver for the kubernetes filter's tests (tests/peers/kube.py) from the Go
# module proxy, once, into the user's cache directory. Never committed.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every staging module
# (k8s.io/api, k8s.io/apiserver, ...) with a directory inside its own repository. A scratch module
# that requires k8s.io/kubernetes and replaces each of those staging modules with its published
# v0.X.Y tag builds cmd/kube-apiserver like any other package.
#
# Environment: KUBE_VERSION (default 1.34.4), KUBE_APISERVER_DIR (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/container-audit-agent/kube-apiserver), NICE (default 19).
# Prints the binary's path on the last line of stdout.
set -euo pipefail

version="${KUBE_VERSION:-1.34.4}"
staging_version="v0.${version#*.}"          # 1.34.4 -> v0.34.4
dir="${KUBE_APISERVER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/container-audit-agent/kube-apiserver}"
bin="$dir/kube-apiserver-v$version"

if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    echo "go is not installed: cannot build kube-apiserver (the kubernetes filter's API tests will skip)" >&2
    exit 1
fi

mod="$dir/module"
mkdir -p "$mod"
cd "$mod"

# kubernetes' own go.mod names the staging modules it replaces with ./staging/src/k8s.io/<name>.
gomod_file="$(go mod download -json "k8s.io/kubernetes@v$version" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
if [ -z "$gomod_file" ] || [ ! -f "$gomod_file" ]; then
    echo "could not download k8s.io/kubernetes@v$version's go.mod from the module proxy" >&2
    exit 1
fi
staging=$(grep -oE '^[[:space:]]*k8s\.io/[A-Za-z0-9._/-]+[[:space:]]+=>[[:space:]]+\./staging/src/k8s\.io/' "$gomod_file" \
    | awk '{print $1}' | sort -u)
if [ -z "$staging" ]; then
    echo "found no staging replace directives in k8s.io/kubernetes@v$version's go.mod" >&2
    exit 1
fi

{
    echo "module kubeapiserverbuild"
    echo
    echo "go 1.24"
    echo
    echo "require k8s.io/kubernetes v$version"
    echo
    for m in $staging; do
        echo "replace $m => $m $staging_version"
    done
} > go.mod
cat > tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO

export CGO_ENABLED=0 GOFLAGS=-mod=mod
nice -n "${NICE:-19}" go mod tidy -e >/dev/null 2>&1 || true
nice -n "${NICE:-19}" go get "k8s.io/kubernetes/cmd/kube-apiserver@v$version" >&2
nice -n "${NICE:-19}" go build -trimpath -ldflags '-s -w' -o "$bin.tmp" k8s.io/kubernetes/cmd/kube-apiserver >&2
mv "$bin.tmp" "$bin"
echo "$bin"
