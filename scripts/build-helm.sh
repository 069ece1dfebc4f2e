#!/usr/bin/env bash
# Builds helm (for tests/test_helm.py) and promtool (for the PrometheusRule tests) from the Go
# module proxy into a cache directory outside the repository; never committed. Skips a tool that
# is already there. Prints the cache directory's bin path. Without Go it says so and exits 0: the
# tests that need these tools then skip with that reason.
set -euo pipefail
HELM_VERSION="${HELM_VERSION:-v4.3.2}"
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}"
bin="${XDG_CACHE_HOME:-$HOME/.cache}/container-audit-agent/bin"
mkdir -p "$bin"
if ! command -v go >/dev/null 2>&1; then
    echo "go not found: helm/promtool not built, their tests will be skipped" >&2
    exit 0
fi
build() {  # build <binary> <package@version> [go build flags]
    if [ -x "$bin/$1" ]; then
        return 0
    fi
    echo "building $2 into $bin (takes a few minutes)" >&2
    GOBIN="$bin" nice -n 19 go install "${@:3}" "$2" \
        || echo "$1 did not build: its tests will be skipped" >&2
}
want="${1:-all}"
if [ "$want" = all ] || [ "$want" = helm ]; then
    build helm "helm.sh/helm/v4/cmd/helm@${HELM_VERSION}"
fi
if [ "$want" = all ] || [ "$want" = promtool ]; then
    # remove_all_sd: without the cloud service discoveries, which rule tests never use (a
    # fraction of the build).
    build promtool "github.com/prometheus/prometheus/cmd/promtool@${PROMETHEUS_VERSION}" -tags remove_all_sd
fi
echo "$bin"
