# shellcheck shell=bash
# compose/lib/rabbitmq.sh: RabbitMQ (native), a private node of the Debian package
# rabbitmq-server (installed when missing), and the epmd it needs. Sourced by
# compose/brokers.sh.
#
# The server runs as the user running this script, from RabbitMQ's own scripts in
# /usr/lib/rabbitmq/bin, not through Debian's /usr/sbin wrappers: as root those
# switch to the rabbitmq user, who can neither enter /root (mode 700, where the data
# folder is by default) nor read root's Erlang cookie. HOME is the node's folder, so
# server and rabbitmqctl share one private cookie: $RABBITMQ_DIR/.erlang.cookie.

readonly AMQP_PORT="${ARROYO_AMQP_PORT:-5672}"
readonly AMQPS_PORT="${ARROYO_AMQPS_PORT:-5671}"
readonly RABBITMQ_DIST_PORT="${ARROYO_RABBITMQ_DIST_PORT:-25672}"
readonly RABBITMQ_NODE="${ARROYO_RABBITMQ_NODENAME:-arroyo@localhost}"
readonly RABBITMQ_START_TIMEOUT="${ARROYO_RABBITMQ_START_TIMEOUT:-60}" # seconds

rabbitmq_set_paths() {
    RABBITMQ_DIR="$BROKERS_DIR/rabbitmq"
    RABBITMQ_PID_FILE="$RABBITMQ_DIR/rabbitmq.pid"         # beam.smp, written by RabbitMQ
    RABBITMQ_LAUNCHER_PID_FILE="$RABBITMQ_DIR/launcher.pid" # rabbitmq-server script
    RABBITMQ_LOG_DIR="$RABBITMQ_DIR/log"
    RABBITMQ_OUT="$RABBITMQ_DIR/startup.log"
    RABBITMQ_CONF="$RABBITMQ_DIR/rabbitmq.conf"
}

rabbitmq_bin_dir() {
    if [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]]; then
        printf '%s' /usr/lib/rabbitmq/bin
    else
        dirname "$(readlink -f "$(command -v rabbitmq-server)")"
    fi
}

rabbitmq_env() {
    RABBITMQ_ENV=(
        HOME="$RABBITMQ_DIR"
        RABBITMQ_NODENAME="$RABBITMQ_NODE"
        RABBITMQ_NODE_IP_ADDRESS="$HOST"
        RABBITMQ_NODE_PORT="$AMQP_PORT"
        RABBITMQ_DIST_PORT="$RABBITMQ_DIST_PORT"
        RABBITMQ_CONFIG_FILE="$RABBITMQ_CONF"
        RABBITMQ_ADVANCED_CONFIG_FILE="$RABBITMQ_DIR/advanced.config"
        RABBITMQ_CONF_ENV_FILE="$RABBITMQ_DIR/rabbitmq-env.conf"
        RABBITMQ_ENABLED_PLUGINS_FILE="$RABBITMQ_DIR/enabled_plugins"
        RABBITMQ_MNESIA_BASE="$RABBITMQ_DIR/mnesia"
        RABBITMQ_LOG_BASE="$RABBITMQ_LOG_DIR"
        RABBITMQ_PID_FILE="$RABBITMQ_PID_FILE"
        # Erlang distribution (and an epmd started by this node) on loopback only.
        ERL_EPMD_ADDRESS="$HOST"
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    )
}

# rabbitmqctl_ SECONDS ARGS...: rabbitmqctl on our node, given up after SECONDS.
rabbitmqctl_() {
    local seconds="$1"
    shift
    timeout "$seconds" env "${RABBITMQ_ENV[@]}" "$(rabbitmq_bin_dir)/rabbitmqctl" -n "$RABBITMQ_NODE" "$@"
}

# The beam.smp pid of our node, or nothing.
rabbitmq_pid() {
    local pid
    pid="$(read_pid "$RABBITMQ_PID_FILE")"
    # RabbitMQ 3.10 passes the node name in the environment, not on the command
    # line; the Erlang home (-home, our HOME) identifies our node's VM instead.
    if [[ -n "$pid" ]] && pid_alive "$pid" && [[ "$(cmdline_of "$pid")" == *beam*" -home $RABBITMQ_DIR "* ]]; then
        printf '%s' "$pid"
    fi
}

rabbitmq_launcher_pid() {
    local pid
    pid="$(read_pid "$RABBITMQ_LAUNCHER_PID_FILE")"
    if [[ -n "$pid" ]] && pid_alive "$pid" && [[ "$(cmdline_of "$pid")" == *rabbitmq-server* ]]; then
        printf '%s' "$pid"
    fi
}

epmd_node_names() {
    local names
    names="$(epmd -names 2>/dev/null || true)"
    sed -nE 's/^name ([^ ]+) at port.*/\1/p' <<<"$names"
}

# epmd (Erlang's port mapper, port 4369) is shared by every Erlang node of the machine.
# If none runs, start it ourselves (on loopback, detached like the brokers) and note
# its pid, so that `down` can stop it again once no node is registered.
epmd_ensure() {
    epmd -names >/dev/null 2>&1 && return 0
    local i
    spawn_detached "$RABBITMQ_DIR/epmd.log" epmd -address "$HOST"
    echo "$!" >"$RABBITMQ_DIR/epmd.pid"
    for ((i = 0; i < 50; i++)); do
        epmd -names >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail_broker rabbitmq "epmd (Erlang port mapper) did not start" "$RABBITMQ_DIR/epmd.log"
}

epmd_stop_if_ours_and_unused() {
    local pid i
    pid="$(read_pid "$RABBITMQ_DIR/epmd.pid")"
    [[ -n "$pid" ]] || return 0
    if ! pid_alive "$pid" || [[ "$(cmdline_of "$pid")" != *epmd* ]]; then
        rm -f "$RABBITMQ_DIR/epmd.pid"
        return 0
    fi
    # rabbitmqctl registers short-lived rabbitmqcli-* nodes; give them a moment.
    for ((i = 0; i < 25; i++)); do
        [[ -z "$(epmd_node_names)" ]] && break
        sleep 0.2
    done
    if [[ -n "$(epmd_node_names)" ]]; then
        log "rabbitmq: leaving epmd (pid $pid) running: other Erlang nodes use it ($(epmd_node_names | tr '\n' ' '))"
        return 0
    fi
    stop_pid "$pid" epmd
    rm -f "$RABBITMQ_DIR/epmd.pid"
}

rabbitmq_write_config() {
    mkdir -p "$RABBITMQ_DIR" "$RABBITMQ_LOG_DIR" "$RABBITMQ_DIR/mnesia"
    cat >"$RABBITMQ_CONF" <<EOF
# Written by compose/brokers.sh on every start; edits are lost.
# AMQP on $HOST:$AMQP_PORT comes from RABBITMQ_NODE_IP_ADDRESS / RABBITMQ_NODE_PORT.
listeners.ssl.default = $HOST:$AMQPS_PORT
ssl_options.cacertfile = $TLS_DIR/ca.pem
ssl_options.certfile = $TLS_DIR/server.pem
ssl_options.keyfile = $TLS_DIR/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
log.file.level = info
log.console = false
EOF
    # No plugins (the management UI would double the start time).
    echo '[].' >"$RABBITMQ_DIR/enabled_plugins"
    : >"$RABBITMQ_DIR/rabbitmq-env.conf"
}

rabbitmq_start() {
    RABBITMQ_STARTED=0
    # /usr/sbin (Debian's wrapper) is not on a normal user's PATH; the real scripts are.
    [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] ||
        ensure_package rabbitmq-server rabbitmq-server rabbitmq-server
    rabbitmq_env
    local pid
    pid="$(rabbitmq_pid)"
    if [[ -n "$pid" ]] && port_open "$AMQP_PORT"; then
        log "rabbitmq: already running (pid $pid, node $RABBITMQ_NODE) on $HOST:$AMQP_PORT"
        return 0
    fi
    if [[ -n "$pid" ]]; then
        log "rabbitmq: node $RABBITMQ_NODE (pid $pid) has no AMQP listener; restarting it"
        rabbitmq_stop_processes --keep-epmd
    elif [[ -f "$RABBITMQ_PID_FILE" || -f "$RABBITMQ_LAUNCHER_PID_FILE" ]]; then
        log "rabbitmq: stale pid file; starting it again"
        rabbitmq_stop_processes --keep-epmd
        await_ports_closed "$AMQP_PORT" "$AMQPS_PORT" "$RABBITMQ_DIST_PORT"
    fi
    require_free_ports rabbitmq "$AMQP_PORT" "$AMQPS_PORT" "$RABBITMQ_DIST_PORT"
    if [[ $'\n'"$(epmd_node_names)"$'\n' == *$'\n'"${RABBITMQ_NODE%@*}"$'\n'* ]]; then
        die "rabbitmq: an Erlang node named ${RABBITMQ_NODE%@*} is already registered with epmd but is not ours (from $BROKERS_DIR); set ARROYO_RABBITMQ_NODENAME"
    fi
    rabbitmq_write_config
    epmd_ensure
    : >"$RABBITMQ_OUT"
    log "rabbitmq: starting node $RABBITMQ_NODE on $HOST:$AMQP_PORT (TLS $AMQPS_PORT)"
    spawn_detached "$RABBITMQ_OUT" env "${RABBITMQ_ENV[@]}" "$(rabbitmq_bin_dir)/rabbitmq-server"
    echo "$!" >"$RABBITMQ_LAUNCHER_PID_FILE"
    RABBITMQ_STARTED=1
}

rabbitmq_wait() {
    ((RABBITMQ_STARTED)) || return 0
    local deadline=$((SECONDS + RABBITMQ_START_TIMEOUT)) t0=$SECONDS launcher
    launcher="$(read_pid "$RABBITMQ_LAUNCHER_PID_FILE")"
    until rabbitmqctl_ 30 -q await_startup --timeout 20 >/dev/null 2>&1; do
        if ! pid_alive "$launcher"; then
            rm -f "$RABBITMQ_LAUNCHER_PID_FILE" "$RABBITMQ_PID_FILE"
            fail_broker rabbitmq "the node exited during startup" "$RABBITMQ_OUT" "$RABBITMQ_LOG_DIR/$RABBITMQ_NODE.log"
        fi
        if ((SECONDS >= deadline)); then
            rabbitmq_stop_processes
            fail_broker rabbitmq "node $RABBITMQ_NODE not started after ${RABBITMQ_START_TIMEOUT}s" "$RABBITMQ_LOG_DIR/$RABBITMQ_NODE.log" "$RABBITMQ_OUT"
        fi
        sleep 1
    done
    if ! port_open "$AMQP_PORT" || ! tls_handshake_ok "$AMQPS_PORT"; then
        rabbitmq_stop_processes
        fail_broker rabbitmq "node started but $HOST:$AMQP_PORT or a verified TLS handshake on $HOST:$AMQPS_PORT is missing" "$RABBITMQ_LOG_DIR/$RABBITMQ_NODE.log"
    fi
    log "rabbitmq: ready after $((SECONDS - t0))s (pid $(rabbitmq_pid), node $RABBITMQ_NODE)"
}

# Stop our node: rabbitmqctl stop, then signals to whatever is left; then epmd if we
# started it and nothing uses it (unless --keep-epmd: the node is started again).
rabbitmq_stop_processes() {
    local beam launcher i keep_epmd="${1:-}"
    beam="$(rabbitmq_pid)"
    launcher="$(rabbitmq_launcher_pid)"
    if [[ -n "$beam" ]]; then
        rabbitmqctl_ 60 -q stop "$RABBITMQ_PID_FILE" >/dev/null 2>&1 ||
            log "rabbitmq: rabbitmqctl stop failed; sending signals"
        for ((i = 0; i < 50; i++)); do
            pid_alive "$beam" || break
            sleep 0.2
        done
        stop_pid "$beam" "rabbitmq (beam.smp)"
    fi
    [[ -n "$launcher" ]] && stop_pid "$launcher" "rabbitmq (rabbitmq-server script)"
    rm -f "$RABBITMQ_PID_FILE" "$RABBITMQ_LAUNCHER_PID_FILE"
    [[ "$keep_epmd" == --keep-epmd ]] || epmd_stop_if_ours_and_unused
}

rabbitmq_stop() {
    rabbitmq_env
    if [[ -z "$(rabbitmq_pid)" && -z "$(rabbitmq_launcher_pid)" ]]; then
        log "rabbitmq: not running"
    else
        log "rabbitmq: stopping node $RABBITMQ_NODE (pid $(rabbitmq_pid))"
    fi
    rabbitmq_stop_processes
}

rabbitmq_status() {
    local pid
    pid="$(rabbitmq_pid)"
    if [[ -n "$pid" ]] && port_open "$AMQP_PORT"; then
        echo "rabbitmq: running (pid $pid, node $RABBITMQ_NODE) on $HOST:$AMQP_PORT, TLS $HOST:$AMQPS_PORT"
    else
        echo "rabbitmq: not running"
        return 1
    fi
}

rabbitmq_exports() {
    echo "export ARROYO_AMQP=amqp://guest:guest@$HOST:$AMQP_PORT/"
    echo "export ARROYO_AMQPS=amqps://guest:guest@$HOST:$AMQPS_PORT/"
}
