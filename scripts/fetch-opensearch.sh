#!/usr/bin/env bash
# Resolve the OpenSearch test node (tests/opensearch/pom.xml) from Maven Central into ~/.m2,
# write its classpath and compile its launcher. Idempotent and silent when everything is cached;
# `make test` runs it before pytest, and tests/peers/opensearch.py runs it when needed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
node_dir="$here/tests/opensearch"
target="$node_dir/target"
classpath="$target/classpath.txt"
classes="$target/classes"
launcher="$node_dir/OpenSearchLauncher.java"

if ! command -v java >/dev/null 2>&1; then
    echo "fetch-opensearch: java not found; the OpenSearch tests will be skipped" >&2
    exit 0
fi

up_to_date() {
    [[ -s "$classpath" && "$classpath" -nt "$node_dir/pom.xml" ]] || return 1
    [[ -f "$classes/OpenSearchLauncher.class" && "$classes/OpenSearchLauncher.class" -nt "$launcher" ]] || return 1
    local jar
    IFS=':' read -r -a jars < "$classpath"
    for jar in "${jars[@]}"; do
        [[ -f "$jar" ]] || return 1
    done
}

if up_to_date; then
    exit 0
fi

mkdir -p "$classes"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! mvn -q -B -Dstyle.color=never -f "$node_dir/pom.xml" dependency:build-classpath \
        -Dmdep.outputFile="$classpath" >"$log" 2>&1; then
    cat "$log" >&2
    echo "fetch-opensearch: could not resolve the OpenSearch jars from Maven Central" >&2
    exit 1
fi
javac -nowarn -d "$classes" -cp "$(cat "$classpath")" "$launcher"
