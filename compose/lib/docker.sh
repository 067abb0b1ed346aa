# shellcheck shell=bash
# compose/lib/docker.sh: the brokers as the containers of compose/docker-compose.yml,
# where a Docker engine answers (Docker Compose v2), with the same ports, exports and
# TLS files as the native ones. Sourced by compose/brokers.sh.

docker_engine_answers() {
    command -v docker >/dev/null 2>&1 && timeout 5 docker info >/dev/null 2>&1
}

compose() {
    local project=arroyo
    # A second set of brokers (other ARROYO_BROKERS_DIR) is a second project.
    if [[ "$BROKERS_DIR" != "$HOME/.cache/arroyo/brokers" ]]; then
        project="arroyo-$(printf '%s' "$BROKERS_DIR" | cksum | cut -d' ' -f1)"
    fi
    ARROYO_BROKERS_DIR="$BROKERS_DIR" ARROYO_KAFKA_PORT="$KAFKA_PORT" \
        ARROYO_KAFKA_TLS_PORT="$KAFKA_TLS_PORT" ARROYO_REDIS_PORT="$REDIS_PORT" \
        ARROYO_REDIS_TLS_PORT="$REDIS_TLS_PORT" ARROYO_AMQP_PORT="$AMQP_PORT" \
        ARROYO_AMQPS_PORT="$AMQPS_PORT" ARROYO_REGISTRY_PORT="$REGISTRY_PORT" \
        ARROYO_REGISTRY_MANAGEMENT_PORT="$REGISTRY_MANAGEMENT_PORT" \
        docker compose -p "$project" -f "$SCRIPT_DIR/docker-compose.yml" "$@"
}

docker_up() {
    compose version >/dev/null 2>&1 ||
        die "docker: 'docker compose' (Compose v2) is not available; install it, or run the brokers natively with ARROYO_BROKERS_MODE=native"
    tls_ensure
    # The containers run as their own users (uid 999, 1000): they must read the key.
    # It is the key of a throwaway test CA, never of a real service.
    chmod 755 "$TLS_DIR"
    chmod 644 "$TLS_DIR"/server.key "$TLS_DIR"/server-keystore.pem
    mkdir -p "$BROKERS_DIR/rabbitmq"
    cat >"$BROKERS_DIR/rabbitmq/docker-tls.conf" <<EOF
# Written by compose/brokers.sh; mounted into the rabbitmq container.
listeners.ssl.default = 5671
ssl_options.cacertfile = /tls/ca.pem
ssl_options.certfile = /tls/server.pem
ssl_options.keyfile = /tls/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
EOF
    log "docker: starting $* with $SCRIPT_DIR/docker-compose.yml"
    if ! compose up -d --wait "$@" >&2; then
        compose logs --tail 40 "$@" >&2 || true
        die "docker compose up failed for: $*"
    fi
}

docker_status() {
    local running broker rc=0
    running="$(compose ps --services --status running 2>/dev/null || true)"
    for broker in "$@"; do
        if grep -qx "$broker" <<<"$running"; then
            echo "$broker: running (docker compose service)"
        else
            echo "$broker: not running"
            rc=1
        fi
    done
    return "$rc"
}

docker_down() {
    compose rm --stop --force -v "$@" >&2
}
