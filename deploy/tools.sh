#!/usr/bin/env bash
# deploy/tools.sh helm: print the path of the helm binary that the Helm chart's tests use
# (tests/deploy/test_helm_chart.py), building it the first time with `go install` of the
# released module from the Go module proxy into the cache (~/.cache/arroyo/tools, or
# $ARROYO_CACHE_DIR/tools), as compose/brokers.sh caches Kafka's jars. Later calls print
# the cached path at once. Progress goes to stderr; exit 1 with one line when it cannot.
set -euo pipefail

readonly HELM_VERSION=v3.22.0
readonly CACHE_DIR="${ARROYO_CACHE_DIR:-$HOME/.cache/arroyo}"

die() {
    echo "deploy/tools.sh: $*" >&2
    exit 1
}

# go_tool NAME VERSION MODULE_PATH: build MODULE_PATH@VERSION once into the cache.
go_tool() {
    local name="$1" version="$2" module="$3"
    local dir="$CACHE_DIR/tools/$name-$version"
    if [[ -x "$dir/$name" ]]; then
        printf '%s\n' "$dir/$name"
        return 0
    fi
    mkdir -p "$CACHE_DIR/tools"
    exec 9>"$CACHE_DIR/tools/.$name.lock"
    flock -w 1200 9 || die "timed out waiting for another build of $name"
    if [[ ! -x "$dir/$name" ]]; then
        command -v go >/dev/null 2>&1 ||
            die "$name $version is not cached in $dir and Go is not installed (it is built with go install)"
        echo "deploy/tools.sh: building $name $version with go install (once; a few minutes) ..." >&2
        local partial="$dir.partial.$$" log="$CACHE_DIR/tools/$name-$version.log"
        rm -rf "$partial"
        if ! GOBIN="$partial" CGO_ENABLED=0 go install "$module@$version" >"$log" 2>&1; then
            rm -rf "$partial"
            tail -n 20 "$log" >&2
            die "go install $module@$version failed (is the Go module proxy reachable?); log: $log"
        fi
        rm -rf "$dir"
        mv "$partial" "$dir"
    fi
    exec 9>&-
    printf '%s\n' "$dir/$name"
}

case "${1:-}" in
helm) go_tool helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm ;;
*) die "usage: deploy/tools.sh helm" ;;
esac
