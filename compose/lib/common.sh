# shellcheck shell=bash
# compose/lib/common.sh: what every broker recipe of compose/brokers.sh uses: the host
# and folders, logging and failing, pid files and processes, ports, starting a
# detached process, installing a Debian package. Sourced by compose/brokers.sh first.

readonly HOST=127.0.0.1
readonly CACHE_DIR="${ARROYO_CACHE_DIR:-$HOME/.cache/arroyo}"
# Made absolute by main once the folder exists.
BROKERS_DIR="${ARROYO_BROKERS_DIR:-$CACHE_DIR/brokers}"
readonly STOP_GRACE=30 # seconds a stopped broker gets before SIGKILL

log() { printf 'brokers.sh: %s\n' "$*" >&2; }

die() {
    log "error: $*"
    exit 1
}

# True if the process exists and is not a zombie (a broker that died while this
# script, its parent, has not reaped it yet is a zombie: kill -0 still succeeds).
pid_alive() {
    local pid="$1" state
    [[ -n "$pid" && -r "/proc/$pid/stat" ]] || return 1
    state="$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null)" || return 1
    [[ "$state" != Z && "$state" != X ]]
}

cmdline_of() {
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true
}

# The pid written in a pid file, or nothing.
read_pid() {
    local file="$1" pid=""
    if [[ -f "$file" ]]; then
        read -r pid <"$file" 2>/dev/null || true
    fi
    [[ "$pid" =~ ^[0-9]+$ ]] && printf '%s' "$pid"
    return 0
}

port_open() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# Who listens on a port (for error messages).
port_owner() {
    local line
    line="$(ss -Hltnp "sport = :$1" 2>/dev/null || true)"
    line="${line%%$'\n'*}"
    line="$(sed -nE 's/.*users:\(\((.*)\)\).*/\1/p' <<<"$line")"
    printf '%s' "${line:-unknown process}"
}

# A server killed a moment ago may still hold its listening sockets while its last
# threads exit (its pid already looks gone): give such ports a few seconds to close.
await_ports_closed() {
    local deadline=$((SECONDS + 15)) port
    for port in "$@"; do
        while port_open "$port" && ((SECONDS < deadline)); do
            sleep 0.2
        done
    done
}

require_free_ports() {
    local broker="$1" port
    shift
    for port in "$@"; do
        if port_open "$port"; then
            die "$broker: port $HOST:$port is already taken by another process ($(port_owner "$port")), not one this script started from $BROKERS_DIR. Stop it, or choose other ports (see compose/README.md)."
        fi
    done
}

# Print which broker failed, why, and the end of its logs; then exit 1.
fail_broker() {
    local broker="$1" reason="$2" file
    shift 2
    log "$broker FAILED: $reason"
    for file in "$@"; do
        if [[ -s "$file" ]]; then
            printf '\n---- last 40 lines of %s ----\n' "$file" >&2
            tail -n 40 "$file" >&2
        fi
    done
    exit 1
}

# Send SIGTERM, wait up to STOP_GRACE seconds, then SIGKILL and wait again.
stop_pid() {
    local pid="$1" name="$2" i
    pid_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_GRACE * 5; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.2
    done
    log "$name (pid $pid) still running after ${STOP_GRACE}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.2
    done
    die "$name (pid $pid) survived SIGKILL"
}

# stop_started NAME PID PID_FILE [quiet]: stop a broker we started from its pid file
# (PID empty: not running), and forget the pid file. "quiet" logs nothing.
stop_started() {
    local name="$1" pid="$2" pid_file="$3" quiet="${4:-}"
    if [[ -z "$pid" ]]; then
        [[ -n "$quiet" ]] || log "$name: not running"
    else
        [[ -n "$quiet" ]] || log "$name: stopping pid $pid"
        stop_pid "$pid" "$name"
    fi
    rm -f "$pid_file"
}

# Start a broker process in the background, detached from this script: its own
# session (a Ctrl-C or a test runner killing its process group leaves it alone),
# stdin from /dev/null, stdout and stderr appended to LOG, and every other inherited
# descriptor closed (our lock, a caller's pipes: a daemon holding the write end of
# a pipe would keep `eval "$(brokers.sh up)"` or a test harness waiting forever).
# $! is the broker's pid afterwards (setsid and bash exec, they do not fork).
spawn_detached() {
    local log="$1"
    shift
    # shellcheck disable=SC2016  # expanded by the inner bash, not here
    setsid bash -c 'for fd in /proc/$$/fd/*; do fd="${fd##*/}"; ((fd > 2)) && eval "exec $fd>&-"; done; exec "$@"' \
        arroyo-broker "$@" </dev/null >>"$log" 2>&1 &
}

# Install a Debian package when its command is missing; do not let the package's own
# service keep running (it would sit on the default port with its own data).
ensure_package() {
    local cmd="$1" package="$2" service="${3:-}"
    command -v "$cmd" >/dev/null 2>&1 && return 0
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        die "'$cmd' not found: install the Debian package $package (sudo apt-get install -y $package)"
    fi
    log "installing $package (apt-get) ..."
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package" >&2; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package" >&2
    fi
    if [[ -n "$service" ]]; then
        if [[ -d /run/systemd/system ]]; then
            systemctl disable --now "$service" >/dev/null 2>&1 || true
        elif [[ -x "/etc/init.d/$service" ]]; then
            "/etc/init.d/$service" stop >/dev/null 2>&1 || true
        fi
    fi
    command -v "$cmd" >/dev/null 2>&1 || die "installed $package but '$cmd' is still not on PATH"
}

