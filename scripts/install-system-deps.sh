#!/usr/bin/env bash
# Installs what the tests need outside Python: rsyslog with RELP (a real peer for the inputs),
# logger (util-linux), logrotate (the tail input's rotation tests), auditd (the kernel audit tests),
# etcd and a kube-apiserver built from source (the kubernetes filter's peer), and resolves the
# OpenSearch jars for the Elasticsearch output's tests.
# Idempotent and quiet when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v rsyslogd >/dev/null 2>&1 || need+=(rsyslog)
compgen -G "/usr/lib/*/rsyslog/omrelp.so" >/dev/null || compgen -G "/usr/lib/rsyslog/omrelp.so" >/dev/null \
    || need+=(rsyslog-relp)
command -v logger >/dev/null 2>&1 || need+=(bsdutils)
# the tail input's rotation tests run Debian's real logrotate (create and copytruncate)
command -v logrotate >/dev/null 2>&1 || [ -x /usr/sbin/logrotate ] || need+=(logrotate)
# auditd and auditctl: the kernel audit tests run the real daemon with test-scoped exec rules.
command -v auditd >/dev/null 2>&1 || need+=(auditd)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)     # the kubernetes filter's API peer
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# bench.instructions' smoke runs (tests/test_bench_smoke_instructions.py) count under cachegrind
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing ${need[*]} with apt-get"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# A real container runtime for the tail input's peer test (tests/test_input_tail_containerd.py,
# which skips without them or without root): Debian's containerd and runc, a static busybox for
# the test's image, and crictl built from the Go module proxy when Go is there.
ctr_need=()
command -v containerd >/dev/null 2>&1 || ctr_need+=(containerd)
command -v runc >/dev/null 2>&1 || ctr_need+=(runc)
dpkg -s busybox-static >/dev/null 2>&1 || ctr_need+=(busybox-static)
if [ ${#ctr_need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${ctr_need[@]}" >/dev/null 2>&1 \
        || echo "containerd/runc not installable here: the containerd peer test will be skipped" >&2
fi
if ! command -v crictl >/dev/null 2>&1 && [ ! -x "$HOME/go/bin/crictl" ] && command -v go >/dev/null 2>&1; then
    go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0 >/dev/null 2>&1 \
        || echo "crictl did not build: the containerd peer test will be skipped" >&2
fi

# kubectl renders the kustomize overlays for the manifest tests; not every apt source has it,
# so its absence only makes those tests skip.
if ! command -v kubectl >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq kubectl >/dev/null 2>&1 \
        || echo "kubectl not installable here: the kustomize render tests will be skipped" >&2
fi

# kube-apiserver for the kubernetes filter's tests: built once from the Go module proxy into the
# user's cache directory (minutes, at the lowest priority); without Go those tests skip.
if command -v go >/dev/null 2>&1; then
    bash scripts/build-kube-apiserver.sh >/dev/null \
        || echo "kube-apiserver could not be built: the kubernetes API tests will be skipped" >&2
else
    echo "go not installed: the kubernetes API tests will be skipped" >&2
fi

if [ -f scripts/fetch-opensearch.sh ] && command -v java >/dev/null 2>&1; then
    bash scripts/fetch-opensearch.sh
fi

# helm (tests/test_helm.py) and promtool (tests/test_monitoring.py), built from the Go module proxy
# into ~/.cache/container-audit-agent/bin; without Go those tests skip.
bash scripts/build-helm.sh >/dev/null
