# shellcheck shell=bash
# compose/lib/kafka_cluster.sh: a native Apache Kafka cluster of KAFKA_NODES nodes
# (`compose/brokers.sh up --kafka-nodes 3`), each a combined broker + controller in
# KRaft mode with its own ports and folder <ARROYO_BROKERS_DIR>/kafka-<id>, replication
# factor 3 and min.insync.replicas 2 (compose/kafka/cluster.properties.in). The jars,
# Java and the readiness round trip are those of lib/kafka.sh. Sourced by
# compose/brokers.sh after kafka.sh; kafka_use_cluster makes the `kafka` broker this
# cluster instead of the single node.

KAFKA_NODES=1 # set by brokers.sh from --kafka-nodes
readonly KAFKA_MAX_NODES=5
readonly KAFKA_NODE_HEAP="${ARROYO_KAFKA_NODE_HEAP:-512m}"

# kafka_node_ports VARIABLE DEFAULT_SUFFIX: the ports of the nodes, from the
# comma-separated list in $VARIABLE (one port per node), else <id>0000 + suffix.
kafka_node_ports() {
    local variable="$1" suffix="$2" list i
    list="${!variable:-}"
    if [[ -z "$list" ]]; then
        for ((i = 1; i <= KAFKA_NODES; i++)); do
            list+="${list:+,}$((i * 10000 + suffix))"
        done
    fi
    local ports=()
    IFS=, read -r -a ports <<<"$list"
    ((${#ports[@]} == KAFKA_NODES)) ||
        die "$variable='$list' names ${#ports[@]} ports, expected one per node ($KAFKA_NODES)"
    for i in "${ports[@]}"; do
        [[ "$i" =~ ^[0-9]+$ ]] || die "$variable='$list': '$i' is not a port number"
    done
    printf '%s\n' "${ports[@]}"
}

# Make the `kafka` broker of brokers.sh a cluster of NODES nodes.
kafka_use_cluster() {
    KAFKA_NODES="$1"
    if ! [[ "$KAFKA_NODES" =~ ^[0-9]+$ ]] || ((KAFKA_NODES < 3 || KAFKA_NODES > KAFKA_MAX_NODES)); then
        die "--kafka-nodes takes 1 (one node, the default) or 3 to $KAFKA_MAX_NODES, not '$KAFKA_NODES'"
    fi
    mapfile -t KAFKA_NODE_PORTS < <(kafka_node_ports ARROYO_KAFKA_NODE_PORTS 9092)
    mapfile -t KAFKA_NODE_CONTROLLER_PORTS < <(kafka_node_ports ARROYO_KAFKA_NODE_CONTROLLER_PORTS 9093)
    ((${#KAFKA_NODE_PORTS[@]} == KAFKA_NODES && ${#KAFKA_NODE_CONTROLLER_PORTS[@]} == KAFKA_NODES)) ||
        exit 1 # kafka_node_ports said why
    kafka_set_paths() { KAFKA_CLUSTER_ID_FILE="$BROKERS_DIR/kafka-cluster.id"; }
    kafka_start() { kafka_cluster_start; }
    kafka_wait() { kafka_cluster_wait; }
    kafka_stop() { kafka_cluster_stop; }
    kafka_status() { kafka_cluster_status; }
    kafka_exports() { echo "export ARROYO_KAFKA=$(kafka_cluster_bootstrap)"; }
}

kafka_cluster_bootstrap() {
    local i out=""
    for ((i = 0; i < KAFKA_NODES; i++)); do
        out+="${out:+,}$HOST:${KAFKA_NODE_PORTS[i]}"
    done
    printf '%s' "$out"
}

kafka_node_dir() { printf '%s' "$BROKERS_DIR/kafka-$1"; }

# The pid of node ID if this script started it from its folder and it runs.
kafka_node_pid() {
    local dir pid
    dir="$(kafka_node_dir "$1")"
    pid="$(read_pid "$dir/kafka.pid")"
    if [[ -n "$pid" ]] && pid_alive "$pid" &&
        [[ "$(cmdline_of "$pid")" == *" kafka.Kafka $dir/server.properties"* ]]; then
        printf '%s' "$pid"
    fi
}

kafka_node_write_config() {
    local id="$1" dir voters="" i
    dir="$(kafka_node_dir "$id")"
    for ((i = 0; i < KAFKA_NODES; i++)); do
        voters+="${voters:+,}$((i + 1))@$HOST:${KAFKA_NODE_CONTROLLER_PORTS[i]}"
    done
    mkdir -p "$dir/data"
    sed -e "s|@NODE_ID@|$id|g" \
        -e "s|@VOTERS@|$voters|g" \
        -e "s|@PORT@|${KAFKA_NODE_PORTS[id - 1]}|g" \
        -e "s|@CONTROLLER_PORT@|${KAFKA_NODE_CONTROLLER_PORTS[id - 1]}|g" \
        -e "s|@DATA_DIR@|$dir/data|g" \
        "$SCRIPT_DIR/kafka/cluster.properties.in" >"$dir/server.properties"
}

# Format node ID's storage with the cluster's id (made once, shared by the nodes).
kafka_node_format() {
    local id="$1" dir cluster_id
    dir="$(kafka_node_dir "$id")"
    [[ -f "$dir/data/meta.properties" ]] && return 0
    if [[ ! -s "$KAFKA_CLUSTER_ID_FILE" ]]; then
        cluster_id="$(kafka_tool kafka.tools.StorageTool random-uuid 2>>"$dir/kafka.out")" ||
            fail_broker "kafka-$id" "StorageTool random-uuid failed" "$dir/kafka.out"
        printf '%s\n' "$cluster_id" >"$KAFKA_CLUSTER_ID_FILE"
    fi
    cluster_id="$(cat "$KAFKA_CLUSTER_ID_FILE")"
    kafka_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" \
        --ignore-formatted >>"$dir/kafka.out" 2>&1 ||
        fail_broker "kafka-$id" "StorageTool format failed" "$dir/kafka.out"
}

# Launch the nodes that do not run; KAFKA_NODES_STARTED lists the ids launched.
kafka_cluster_start() {
    KAFKA_NODES_STARTED=()
    local id pid dir port controller_port
    for ((id = 1; id <= KAFKA_NODES; id++)); do
        dir="$(kafka_node_dir "$id")"
        port="${KAFKA_NODE_PORTS[id - 1]}"
        controller_port="${KAFKA_NODE_CONTROLLER_PORTS[id - 1]}"
        pid="$(kafka_node_pid "$id")"
        if [[ -n "$pid" ]] && port_open "$port"; then
            log "kafka-$id: already running (pid $pid) on $HOST:$port"
            continue
        fi
        if [[ -n "$pid" ]]; then
            log "kafka-$id: pid $pid does not answer on $HOST:$port; restarting it"
            stop_pid "$pid" "kafka-$id"
        elif [[ -f "$dir/kafka.pid" ]]; then
            log "kafka-$id: stale pid file (process $(read_pid "$dir/kafka.pid") is gone); starting it again"
            await_ports_closed "$port" "$controller_port"
        fi
        rm -f "$dir/kafka.pid"
        require_free_ports "kafka-$id" "$port" "$controller_port"
        kafka_ensure_jars
        kafka_node_write_config "$id"
        : >"$dir/kafka.out"
        kafka_node_format "$id"
        log "kafka-$id: starting Apache Kafka $KAFKA_VERSION node $id of $KAFKA_NODES on $HOST:$port (controller $controller_port)"
        spawn_detached "$dir/kafka.out" "$(java_cmd)" -Xms128m -Xmx"$KAFKA_NODE_HEAP" \
            -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
            -Djava.awt.headless=true -Dkafka.logs.dir="$dir" \
            -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/log4j2.properties" \
            -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties"
        echo "$!" >"$dir/kafka.pid"
        KAFKA_NODES_STARTED+=("$id")
    done
}

# Wait until every node launched listens, then for a produce/consume round trip
# through the whole bootstrap list (its topic has 3 replicas: all nodes registered).
kafka_cluster_wait() {
    ((${#KAFKA_NODES_STARTED[@]})) || return 0
    local id pid dir port deadline=$((SECONDS + KAFKA_START_TIMEOUT)) t0=$SECONDS pids
    for id in "${KAFKA_NODES_STARTED[@]}"; do
        dir="$(kafka_node_dir "$id")"
        port="${KAFKA_NODE_PORTS[id - 1]}"
        pid="$(read_pid "$dir/kafka.pid")"
        until port_open "$port"; do
            if ! pid_alive "$pid"; then
                rm -f "$dir/kafka.pid"
                fail_broker "kafka-$id" "the node process (pid $pid) exited during startup" "$dir/kafka.log" "$dir/kafka.out"
            fi
            if ((SECONDS >= deadline)); then
                kafka_cluster_stop quiet
                fail_broker "kafka-$id" "no listener on $HOST:$port after ${KAFKA_START_TIMEOUT}s" "$dir/kafka.log" "$dir/kafka.out"
            fi
            sleep 0.25
        done
    done
    log "kafka: nodes ${KAFKA_NODES_STARTED[*]} listening after $((SECONDS - t0))s; produce/consume round trip ..."
    pids=()
    for id in "${KAFKA_NODES_STARTED[@]}"; do
        pids+=("$(read_pid "$(kafka_node_dir "$id")/kafka.pid")")
    done
    if ! kafka_round_trip_until "$deadline" "$(kafka_cluster_bootstrap)" "$BROKERS_DIR/kafka-1/kafka.out" "${pids[@]}"; then
        fail_broker kafka "produce/consume round trip on topic $KAFKA_READY_TOPIC through $(kafka_cluster_bootstrap) failed" \
            "$BROKERS_DIR/kafka-1/kafka.out" "$BROKERS_DIR/kafka-1/kafka.log"
    fi
    log "kafka: cluster of $KAFKA_NODES nodes ready after $((SECONDS - t0))s"
}

# Stop every node this script started from $BROKERS_DIR/kafka-<id> (however many
# nodes the cluster had): SIGTERM to all at once, then wait for them (SIGKILL after
# STOP_GRACE). A node left alone once the others are gone waits for a quorum that will
# not come back (its broker has shut down cleanly by then; its controller does not
# finish): after KAFKA_ALONE_GRACE seconds alone it gets SIGKILL.
readonly KAFKA_ALONE_GRACE=5
kafka_cluster_stop() {
    local quiet="${1:-}" dir id pid pids=() names=() alive i deadline=$((SECONDS + STOP_GRACE))
    local alone_since=""
    for dir in "$BROKERS_DIR"/kafka-[0-9]*; do
        [[ -d "$dir" ]] || continue
        id="${dir##*-}"
        pid="$(kafka_node_pid "$id")"
        if [[ -n "$pid" ]]; then
            [[ -n "$quiet" ]] || log "kafka-$id: stopping pid $pid"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            names+=("kafka-$id")
        fi
        rm -f "$dir/kafka.pid"
    done
    while :; do
        alive=()
        for i in "${!pids[@]}"; do
            pid_alive "${pids[i]}" && alive+=("$i")
        done
        ((${#alive[@]})) || return 0
        if ((${#alive[@]} == 1 && ${#pids[@]} > 1)); then
            alone_since="${alone_since:-$SECONDS}"
            if ((SECONDS - alone_since >= KAFKA_ALONE_GRACE)); then
                log "${names[alive[0]]}: still running ${KAFKA_ALONE_GRACE}s after the other nodes stopped (no quorum left to shut down with): SIGKILL"
                break
            fi
        fi
        ((SECONDS < deadline)) || break
        sleep 0.2
    done
    ((${#alive[@]} == 1 && ${#pids[@]} > 1)) || log "${#alive[@]} Kafka node(s) still running after ${STOP_GRACE}s: SIGKILL"
    for i in "${alive[@]}"; do
        kill -KILL "${pids[i]}" 2>/dev/null || true
    done
    for i in "${alive[@]}"; do
        for ((deadline = SECONDS + 10; SECONDS < deadline; )); do
            pid_alive "${pids[i]}" || continue 2
            sleep 0.2
        done
        die "${names[i]} (pid ${pids[i]}) survived SIGKILL"
    done
}

# The id of the active controller (the KRaft quorum's leader), asked of the cluster.
kafka_cluster_leader() {
    kafka_tool org.apache.kafka.tools.MetadataQuorumCommand \
        --bootstrap-server "$(kafka_cluster_bootstrap)" describe --status 2>/dev/null |
        sed -nE 's/^LeaderId:[[:space:]]*([0-9]+).*/\1/p'
}

kafka_cluster_status() {
    local id pid port rc=0 leader
    for ((id = 1; id <= KAFKA_NODES; id++)); do
        pid="$(kafka_node_pid "$id")"
        port="${KAFKA_NODE_PORTS[id - 1]}"
        if [[ -n "$pid" ]] && port_open "$port"; then
            echo "kafka-$id: running (pid $pid) on $HOST:$port, controller $HOST:${KAFKA_NODE_CONTROLLER_PORTS[id - 1]}"
        elif [[ -n "$pid" ]]; then
            echo "kafka-$id: not answering (pid $pid alive, nothing on $HOST:$port)"
            rc=1
        else
            echo "kafka-$id: not running"
            rc=1
        fi
    done
    leader="$(kafka_cluster_leader || true)"
    if [[ -n "$leader" ]]; then
        echo "kafka: active controller kafka-$leader"
    else
        echo "kafka: no active controller found (the quorum did not answer)"
        rc=1
    fi
    return "$rc"
}
