# shellcheck shell=bash
# compose/lib/redis.sh: Redis (native), a private redis-server of the Debian package
# (installed when missing) with TLS where the build has it. Sourced by
# compose/brokers.sh.

readonly REDIS_PORT="${ARROYO_REDIS_PORT:-6379}"
readonly REDIS_TLS_PORT="${ARROYO_REDIS_TLS_PORT:-6380}"
readonly REDIS_START_TIMEOUT="${ARROYO_REDIS_START_TIMEOUT:-20}" # seconds
# A durable Redis reads its append-only file before it answers PING (it answers
# LOADING meanwhile): that is progress, waited for up to this long.
readonly REDIS_LOAD_TIMEOUT=600 # seconds
# More redis-server arguments, split on spaces (e.g. "--maxmemory 2gb").
read -r -a REDIS_EXTRA_ARGS <<<"${ARROYO_REDIS_ARGS:-}"

redis_set_paths() {
    REDIS_DIR="$BROKERS_DIR/redis"
    REDIS_PID_FILE="$REDIS_DIR/redis.pid"
    REDIS_LOG="$REDIS_DIR/redis.log"
    REDIS_OUT="$REDIS_DIR/redis.out"
}

# Debian builds redis-server with TLS (linked to libssl); other builds may not.
# (No `ldd | grep -q`: with pipefail, grep quitting early can fail the pipeline.)
redis_has_tls() {
    if [[ -z "${REDIS_TLS:-}" ]]; then
        REDIS_TLS=no
        [[ "$(ldd "$(command -v redis-server)" 2>/dev/null)" == *libssl* ]] && REDIS_TLS=yes
    fi
    [[ "$REDIS_TLS" == yes ]]
}

redis_pid() {
    local pid cmd
    pid="$(read_pid "$REDIS_PID_FILE")"
    [[ -n "$pid" ]] && pid_alive "$pid" || return 0
    cmd="$(cmdline_of "$pid")"
    if [[ "$cmd" == *redis-server* && "$cmd" =~ $HOST:$REDIS_PORT( |$) ]]; then
        printf '%s' "$pid"
    fi
}

# What the server answers to PING: PONG, LOADING ... while it reads its append-only
# file, or redis-cli's own error when nothing answers.
redis_reply() { timeout 5 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>&1 || true; }

redis_ping() { [[ "$(redis_reply)" == PONG ]]; }

redis_start() {
    REDIS_STARTED=0
    ensure_package redis-server redis-server redis-server
    ensure_package redis-cli redis-tools
    local pid
    pid="$(redis_pid)"
    if [[ -n "$pid" ]] && redis_ping; then
        log "redis: already running (pid $pid) on $HOST:$REDIS_PORT"
        return 0
    fi
    [[ -n "$pid" ]] && { log "redis: pid $pid does not answer PING; restarting it"; stop_pid "$pid" redis; }
    if [[ -z "$pid" && -f "$REDIS_PID_FILE" ]]; then
        log "redis: stale pid file; starting it again"
        await_ports_closed "$REDIS_PORT" "$REDIS_TLS_PORT"
    fi
    rm -f "$REDIS_PID_FILE"
    local tls_args=()
    if redis_has_tls; then
        require_free_ports redis "$REDIS_PORT" "$REDIS_TLS_PORT"
        tls_args=(--tls-port "$REDIS_TLS_PORT" --tls-cert-file "$TLS_DIR/server.pem"
            --tls-key-file "$TLS_DIR/server.key" --tls-ca-cert-file "$TLS_DIR/ca.pem"
            --tls-auth-clients optional)
    else
        require_free_ports redis "$REDIS_PORT"
    fi
    mkdir -p "$REDIS_DIR"
    : >"$REDIS_OUT"
    log "redis: starting on $HOST:$REDIS_PORT${tls_args:+ (TLS $REDIS_TLS_PORT)}"
    # Not --daemonize: started in the background by us, its pid is known at once
    # and a crash during startup is seen at once.
    # Durable as a production server should be: writes go to the append-only file
    # before their replies (unless a stalled fsync holds them up to 2 s), fsynced every
    # second: a killed redis-server keeps what it confirmed, a machine crash loses up to
    # about the last second or two. No RDB snapshots.
    spawn_detached "$REDIS_OUT" redis-server --daemonize no --bind "$HOST" \
        --port "$REDIS_PORT" --save "" --appendonly yes --appendfsync everysec \
        --dir "$REDIS_DIR" \
        --logfile "$REDIS_LOG" --pidfile "$REDIS_PID_FILE" "${tls_args[@]}" \
        "${REDIS_EXTRA_ARGS[@]}"
    echo "$!" >"$REDIS_PID_FILE"
    REDIS_STARTED=1
}

redis_wait() {
    ((REDIS_STARTED)) || return 0
    local t0=$SECONDS pid limit=$REDIS_START_TIMEOUT reply
    pid="$(read_pid "$REDIS_PID_FILE")"
    while reply="$(redis_reply)" && [[ "$reply" != PONG ]]; do
        if ! pid_alive "$pid"; then
            rm -f "$REDIS_PID_FILE"
            fail_broker redis "redis-server (pid $pid) exited during startup" "$REDIS_LOG" "$REDIS_OUT"
        fi
        if ((limit < REDIS_LOAD_TIMEOUT)) && [[ "$reply" == LOADING* ]]; then
            limit=$REDIS_LOAD_TIMEOUT
            log "redis: loading its append-only file ($(du -sh "$REDIS_DIR/appendonlydir" 2>/dev/null | cut -f1)); waiting up to ${limit}s"
        fi
        if ((SECONDS - t0 >= limit)); then
            stop_pid "$pid" redis
            rm -f "$REDIS_PID_FILE"
            fail_broker redis "no PONG from $HOST:$REDIS_PORT after ${limit}s" "$REDIS_LOG" "$REDIS_OUT"
        fi
        sleep 0.1
    done
    if redis_has_tls && ! tls_handshake_ok "$REDIS_TLS_PORT"; then
        fail_broker redis "no verified TLS handshake on $HOST:$REDIS_TLS_PORT" "$REDIS_LOG"
    fi
    log "redis: ready (pid $pid)"
}

redis_stop() { stop_started redis "$(redis_pid)" "$REDIS_PID_FILE" "${1:-}"; }

redis_status() {
    local pid
    pid="$(redis_pid)"
    if [[ -n "$pid" ]] && redis_ping; then
        echo "redis: running (pid $pid) on $HOST:$REDIS_PORT$(redis_has_tls && echo ", TLS $HOST:$REDIS_TLS_PORT")"
    else
        echo "redis: not running"
        return 1
    fi
}

redis_exports() {
    echo "export ARROYO_REDIS=$HOST:$REDIS_PORT"
    if [[ "$MODE" == docker ]] || redis_has_tls; then
        echo "export ARROYO_REDIS_TLS=$HOST:$REDIS_TLS_PORT"
    fi
}
