# shellcheck shell=bash
# compose/lib/kafka.sh: Apache Kafka (native), one combined broker+controller node in
# KRaft mode from Apache's jars on Maven Central (cached), run on the machine's Java
# 17+ with compose/kafka/server.properties.in. Sourced by compose/brokers.sh.

readonly KAFKA_VERSION=4.1.2
readonly KAFKA_PORT="${ARROYO_KAFKA_PORT:-9092}"
readonly KAFKA_CONTROLLER_PORT="${ARROYO_KAFKA_CONTROLLER_PORT:-9093}"
readonly KAFKA_TLS_PORT="${ARROYO_KAFKA_TLS_PORT:-9094}"
readonly KAFKA_START_TIMEOUT="${ARROYO_KAFKA_START_TIMEOUT:-120}" # seconds
readonly KAFKA_LIBS="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"
readonly KAFKA_READY_TOPIC=arroyo-readiness

kafka_set_paths() {
    KAFKA_DIR="$BROKERS_DIR/kafka"
    KAFKA_PID_FILE="$KAFKA_DIR/kafka.pid"
    KAFKA_PROPS="$KAFKA_DIR/server.properties"
    KAFKA_LOG="$KAFKA_DIR/kafka.log"
    KAFKA_OUT="$KAFKA_DIR/kafka.out"
}

java_cmd() {
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        printf '%s' "$JAVA_HOME/bin/java"
    else
        command -v java 2>/dev/null || die "java not found (Kafka needs Java 17 or newer)"
    fi
}

# Fetch the broker's jars from Maven Central once; later starts need no network.
# The marker holds the checksum of the pom, so editing the pom refetches.
kafka_ensure_jars() {
    local pom="$SCRIPT_DIR/kafka/pom.xml" marker="$KAFKA_LIBS/.arroyo-complete" want
    want="$(sha256sum "$pom" | cut -d' ' -f1)"
    [[ -f "$marker" && "$(cat "$marker")" == "$want" ]] && return 0
    mkdir -p "$(dirname "$KAFKA_LIBS")"
    exec 8>"$(dirname "$KAFKA_LIBS")/.lock"
    flock -w 600 8 || die "kafka: timed out waiting for another download of the Kafka jars"
    if [[ -f "$marker" && "$(cat "$marker")" == "$want" ]]; then
        exec 8>&-
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "kafka: the jars are not cached in $KAFKA_LIBS and Maven (mvn) is not installed (apt-get install maven)"
    log "kafka: fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS ..."
    local tmp="$KAFKA_LIBS.partial.$$" mvn_log
    mvn_log="$(dirname "$KAFKA_LIBS")/mvn.log"
    rm -rf "$tmp"
    if ! mvn -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
        rm -rf "$tmp"
        fail_broker kafka "mvn dependency:copy-dependencies failed (is Maven Central reachable?)" "$mvn_log"
    fi
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
    printf '%s\n' "$want" >"$marker"
    exec 8>&-
}

# Run one of Kafka's command-line tools (small heap, quick JIT, warnings to stderr).
kafka_tool() {
    "$(java_cmd)" -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/tools-log4j2.properties" \
        -cp "$KAFKA_LIBS/*" "$@"
}

kafka_pid() {
    local pid
    pid="$(read_pid "$KAFKA_PID_FILE")"
    if [[ -n "$pid" ]] && pid_alive "$pid" && [[ "$(cmdline_of "$pid")" == *" kafka.Kafka $KAFKA_PROPS"* ]]; then
        printf '%s' "$pid"
    fi
}

kafka_write_config() {
    mkdir -p "$KAFKA_DIR/data"
    sed -e "s|@PORT@|$KAFKA_PORT|g" \
        -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
        -e "s|@TLS_PORT@|$KAFKA_TLS_PORT|g" \
        -e "s|@DATA_DIR@|$KAFKA_DIR/data|g" \
        -e "s|@TLS_DIR@|$TLS_DIR|g" \
        "$SCRIPT_DIR/kafka/server.properties.in" >"$KAFKA_PROPS"
}

# Give the storage a cluster id and format it, once per data folder.
kafka_format() {
    [[ -f "$KAFKA_DIR/data/meta.properties" ]] && return 0
    local cluster_id
    if [[ ! -s "$KAFKA_DIR/cluster.id" ]]; then
        cluster_id="$(kafka_tool kafka.tools.StorageTool random-uuid 2>>"$KAFKA_OUT")" ||
            fail_broker kafka "StorageTool random-uuid failed" "$KAFKA_OUT"
        printf '%s\n' "$cluster_id" >"$KAFKA_DIR/cluster.id"
    fi
    cluster_id="$(cat "$KAFKA_DIR/cluster.id")"
    kafka_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_PROPS" \
        --standalone --ignore-formatted >>"$KAFKA_OUT" 2>&1 ||
        fail_broker kafka "StorageTool format failed" "$KAFKA_OUT"
}

# Launch the broker unless it runs; set KAFKA_STARTED=1 if launched.
kafka_start() {
    KAFKA_STARTED=0
    local pid
    pid="$(kafka_pid)"
    if [[ -n "$pid" ]] && port_open "$KAFKA_PORT"; then
        log "kafka: already running (pid $pid) on $HOST:$KAFKA_PORT"
        return 0
    fi
    if [[ -n "$pid" ]]; then
        # Alive but not answering: hung or still starting. Start it over.
        log "kafka: pid $pid does not answer on $HOST:$KAFKA_PORT; restarting it"
        stop_pid "$pid" kafka
    elif [[ -f "$KAFKA_PID_FILE" ]]; then
        log "kafka: stale pid file (process $(read_pid "$KAFKA_PID_FILE") is gone); starting it again"
        await_ports_closed "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_TLS_PORT"
    fi
    rm -f "$KAFKA_PID_FILE"
    require_free_ports kafka "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_TLS_PORT"
    kafka_ensure_jars
    kafka_write_config
    : >"$KAFKA_OUT"
    kafka_format
    log "kafka: starting Apache Kafka $KAFKA_VERSION on $HOST:$KAFKA_PORT (TLS $KAFKA_TLS_PORT)"
    spawn_detached "$KAFKA_OUT" "$(java_cmd)" -Xms512m -Xmx1g -XX:+UseG1GC \
        -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dkafka.logs.dir="$KAFKA_DIR" \
        -Dlog4j2.configurationFile="$SCRIPT_DIR/kafka/log4j2.properties" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS"
    echo "$!" >"$KAFKA_PID_FILE"
    KAFKA_STARTED=1
}

# kafka_round_trip [BOOTSTRAP [LOG]]: produce one record and read it back through a
# consumer group (default: the single node, its kafka.out). The group also makes the
# broker create __consumer_offsets now rather than in the first test.
kafka_round_trip() {
    local bootstrap="${1:-$HOST:$KAFKA_PORT}" out_file="${2:-$KAFKA_OUT}" token out i
    token="ready-$(date +%s%N)-$$"
    printf '%s\n' "$token" | kafka_tool org.apache.kafka.tools.ConsoleProducer \
        --bootstrap-server "$bootstrap" --topic "$KAFKA_READY_TOPIC" \
        --sync --timeout 0 --request-required-acks all --request-timeout-ms 30000 \
        --producer-property max.block.ms=60000 >/dev/null 2>>"$out_file" || return 1
    # Earlier checks left their records consumed; read on until ours arrives.
    for ((i = 0; i < 10; i++)); do
        out="$(kafka_tool org.apache.kafka.tools.consumer.ConsoleConsumer \
            --bootstrap-server "$bootstrap" --topic "$KAFKA_READY_TOPIC" \
            --group arroyo-readiness --from-beginning --max-messages 1 \
            --consumer-property fetch.max.wait.ms=50 \
            --timeout-ms 30000 2>>"$out_file")" || return 1
        [[ "$out" == *"$token"* ]] && return 0
        [[ -z "$out" ]] && return 1
    done
    return 1
}

# kafka_round_trip_until DEADLINE BOOTSTRAP LOG [PID...]: kafka_round_trip, tried again
# every 2 s until SECONDS reaches DEADLINE: a broker that just started may not lead its
# partitions yet (NotLeaderOrFollower; more likely with a large data directory to load,
# or while the nodes of a cluster elect leaders). Returns 1 at the deadline, or as soon
# as one of the PIDs (the brokers' processes) has exited.
kafka_round_trip_until() {
    local deadline="$1" bootstrap="$2" out_file="$3" pid
    shift 3
    until kafka_round_trip "$bootstrap" "$out_file"; do
        ((SECONDS < deadline)) || return 1
        for pid in "$@"; do
            pid_alive "$pid" || return 1
        done
        log "kafka: round trip through $bootstrap failed; trying again"
        sleep 2
    done
}

kafka_wait() {
    ((KAFKA_STARTED)) || return 0
    local pid deadline=$((SECONDS + KAFKA_START_TIMEOUT)) t0=$SECONDS
    pid="$(read_pid "$KAFKA_PID_FILE")"
    until port_open "$KAFKA_PORT"; do
        if ! pid_alive "$pid"; then
            rm -f "$KAFKA_PID_FILE"
            fail_broker kafka "the broker process (pid $pid) exited during startup" "$KAFKA_LOG" "$KAFKA_OUT"
        fi
        if ((SECONDS >= deadline)); then
            kafka_stop quiet
            fail_broker kafka "no listener on $HOST:$KAFKA_PORT after ${KAFKA_START_TIMEOUT}s" "$KAFKA_LOG" "$KAFKA_OUT"
        fi
        sleep 0.25
    done
    log "kafka: listening after $((SECONDS - t0))s; produce/consume round trip ..."
    if ! kafka_round_trip_until "$deadline" "$HOST:$KAFKA_PORT" "$KAFKA_OUT" "$pid"; then
        kafka_stop quiet
        fail_broker kafka "produce/consume round trip on topic $KAFKA_READY_TOPIC failed" "$KAFKA_OUT" "$KAFKA_LOG"
    fi
    if ! tls_handshake_ok "$KAFKA_TLS_PORT"; then
        kafka_stop quiet
        fail_broker kafka "no verified TLS handshake on $HOST:$KAFKA_TLS_PORT" "$KAFKA_LOG"
    fi
    log "kafka: ready after $((SECONDS - t0))s (pid $pid)"
}

kafka_stop() { stop_started kafka "$(kafka_pid)" "$KAFKA_PID_FILE" "${1:-}"; }

kafka_status() {
    local pid
    pid="$(kafka_pid)"
    if [[ -n "$pid" ]] && port_open "$KAFKA_PORT"; then
        echo "kafka: running (pid $pid) on $HOST:$KAFKA_PORT, TLS $HOST:$KAFKA_TLS_PORT"
    elif [[ -n "$pid" ]]; then
        echo "kafka: not answering (pid $pid alive, nothing on $HOST:$KAFKA_PORT)"
        return 1
    else
        echo "kafka: not running"
        return 1
    fi
}

kafka_exports() {
    echo "export ARROYO_KAFKA=$HOST:$KAFKA_PORT"
    echo "export ARROYO_KAFKA_TLS=$HOST:$KAFKA_TLS_PORT"
}
