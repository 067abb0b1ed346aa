#!/usr/bin/env bash
# compose/brokers.sh: start, stop or check the brokers Arroyo's tests talk to.
#
#   compose/brokers.sh up|down|status [kafka] [redis] [rabbitmq] [registry]   (no names = all)
#   eval "$(compose/brokers.sh up)"     # exports ARROYO_KAFKA, ARROYO_REDIS, ...
#
# Apache Kafka 4.1.2 (KRaft, one combined broker+controller node), Redis, RabbitMQ and
# a schema registry (Apicurio Registry, whose /apis/ccompat/v7 speaks the Confluent
# Schema Registry API) on 127.0.0.1. Where a Docker engine answers, the containers of
# compose/docker-compose.yml; elsewhere native processes: Kafka and Apicurio from
# Maven Central (Kafka on the machine's Java 17+, Apicurio on a Java 21+ found beside
# it, see registry_find_java), Redis and RabbitMQ from Debian packages.
# Data, logs, pid files and the test TLS certificates live in one folder,
# ARROYO_BROKERS_DIR. See compose/README.md for the environment variables.
#
# Only the `export` lines of `up` go to stdout; all progress goes to stderr.

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly KAFKA_VERSION=4.1.2
readonly HOST=127.0.0.1
# Apicurio Registry. 3.3 needs Java 21+ (3.0.9 ran on 17 but answers HTTP 500, a
# StackOverflowError in its Avro canonicalizer, to Avro schemas that recurse through
# a map, such as Arroyo's envelope with its arroyo.Value).
readonly REGISTRY_VERSION=3.3.3
readonly REGISTRY_JAVA_MIN=21
readonly ALL_BROKERS=(kafka redis rabbitmq registry)

readonly CACHE_DIR="${ARROYO_CACHE_DIR:-$HOME/.cache/arroyo}"
BROKERS_DIR="${ARROYO_BROKERS_DIR:-$CACHE_DIR/brokers}"

readonly KAFKA_PORT="${ARROYO_KAFKA_PORT:-9092}"
readonly KAFKA_CONTROLLER_PORT="${ARROYO_KAFKA_CONTROLLER_PORT:-9093}"
readonly KAFKA_TLS_PORT="${ARROYO_KAFKA_TLS_PORT:-9094}"
readonly REDIS_PORT="${ARROYO_REDIS_PORT:-6379}"
readonly REDIS_TLS_PORT="${ARROYO_REDIS_TLS_PORT:-6380}"
readonly AMQP_PORT="${ARROYO_AMQP_PORT:-5672}"
readonly AMQPS_PORT="${ARROYO_AMQPS_PORT:-5671}"
readonly RABBITMQ_DIST_PORT="${ARROYO_RABBITMQ_DIST_PORT:-25672}"
readonly RABBITMQ_NODE="${ARROYO_RABBITMQ_NODENAME:-arroyo@localhost}"
readonly REGISTRY_PORT="${ARROYO_REGISTRY_PORT:-8081}"
readonly REGISTRY_MANAGEMENT_PORT="${ARROYO_REGISTRY_MANAGEMENT_PORT:-9081}" # /health

# Seconds to wait for a broker to accept work, and for a stopped one to go away.
readonly KAFKA_START_TIMEOUT="${ARROYO_KAFKA_START_TIMEOUT:-120}"
readonly REDIS_START_TIMEOUT=20
readonly RABBITMQ_START_TIMEOUT="${ARROYO_RABBITMQ_START_TIMEOUT:-60}"
readonly REGISTRY_START_TIMEOUT="${ARROYO_REGISTRY_START_TIMEOUT:-90}"
readonly REGISTRY_ROUND_TRIP_GRACE=15 # healthy but the readiness round trip fails
readonly STOP_GRACE=30

readonly KAFKA_LIBS="$CACHE_DIR/kafka-$KAFKA_VERSION/libs"
readonly KAFKA_READY_TOPIC=arroyo-readiness
readonly REGISTRY_APP="$CACHE_DIR/apicurio-$REGISTRY_VERSION"
readonly REGISTRY_ARTIFACT="io.apicurio:apicurio-registry-app:$REGISTRY_VERSION:tar.gz:all"
readonly REGISTRY_JAR=quarkus-run.jar # Quarkus fast-jar layout: app/, lib/, quarkus/
readonly REGISTRY_READY_SUBJECT=arroyo-readiness-value

# ---------------------------------------------------------------------------
# small helpers

log() { printf 'brokers.sh: %s\n' "$*" >&2; }

die() {
    log "error: $*"
    exit 1
}

usage() {
    cat >&2 <<EOF
usage: $0 up|down|status [kafka] [redis] [rabbitmq] [registry]

  up      start the brokers (no-op for those already running), wait until each
          accepts work, print their addresses as shell export lines:
              eval "\$($0 up)"
  down    stop the brokers this script started from ARROYO_BROKERS_DIR
  status  one line per broker; exit 0 only if all named brokers run

Environment: ARROYO_BROKERS_DIR (data, logs, TLS files; default
~/.cache/arroyo/brokers), ARROYO_KAFKA_PORT, ARROYO_KAFKA_CONTROLLER_PORT,
ARROYO_KAFKA_TLS_PORT, ARROYO_REDIS_PORT, ARROYO_REDIS_TLS_PORT, ARROYO_AMQP_PORT,
ARROYO_AMQPS_PORT, ARROYO_RABBITMQ_DIST_PORT, ARROYO_RABBITMQ_NODENAME,
ARROYO_REGISTRY_PORT, ARROYO_REGISTRY_MANAGEMENT_PORT, ARROYO_REGISTRY_JAVA,
ARROYO_BROKERS_MODE (auto, docker or native).
See compose/README.md.
EOF
    exit 2
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

# A TLS handshake that verifies the server certificate against our CA.
tls_handshake_ok() {
    local port="$1"
    timeout 10 openssl s_client -connect "$HOST:$port" -servername localhost \
        -CAfile "$TLS_DIR/ca.pem" -verify_return_error -brief </dev/null >/dev/null 2>&1
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

# ---------------------------------------------------------------------------
# TLS: one private test CA, a server certificate for 127.0.0.1/localhost, and a
# client certificate, made once with openssl and shared by all three brokers.

tls_ensure() {
    local f complete=1
    for f in ca.pem ca.key server.pem server.key server-keystore.pem client.pem client.key; do
        [[ -s "$TLS_DIR/$f" ]] || complete=0
    done
    ((complete)) && return 0
    command -v openssl >/dev/null 2>&1 || ensure_package openssl openssl
    log "making the test TLS certificates in $TLS_DIR"
    local tmp
    mkdir -p "$TLS_DIR"
    tmp="$(mktemp -d "$TLS_DIR/.new.XXXXXX")"
    (
        cd "$tmp"
        umask 077
        openssl req -x509 -newkey rsa:2048 -noenc -days 3650 -sha256 \
            -keyout ca.key -out ca.pem -subj "/CN=Arroyo test CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign"
        openssl req -new -newkey rsa:2048 -noenc -keyout server.key -out server.csr \
            -subj "/CN=localhost"
        printf '%s\n' "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" \
            "extendedKeyUsage=serverAuth" \
            "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
            "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid,issuer" >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -days 3650 -sha256 \
            -set_serial "0x$(openssl rand -hex 16)" -extfile server.ext -out server.pem
        openssl req -new -newkey rsa:2048 -noenc -keyout client.key -out client.csr \
            -subj "/CN=arroyo-client"
        printf '%s\n' "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" \
            "extendedKeyUsage=clientAuth" \
            "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid,issuer" >client.ext
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -days 3650 -sha256 \
            -set_serial "0x$(openssl rand -hex 16)" -extfile client.ext -out client.pem
        # Kafka's PEM keystore: unencrypted PKCS#8 key followed by the chain.
        cat server.key server.pem ca.pem >server-keystore.pem
        rm -f ./*.csr ./*.ext
        chmod 644 ca.pem server.pem client.pem
    ) >/dev/null 2>"$TLS_DIR/openssl.log" || fail_broker tls "openssl could not make the certificates" "$TLS_DIR/openssl.log"
    mv -f "$tmp"/* "$TLS_DIR"/
    rmdir "$tmp"
}

# ---------------------------------------------------------------------------
# Kafka (native)

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

# Produce one record and read it back through a consumer group. The group also makes
# the broker create __consumer_offsets now rather than in the first test.
kafka_round_trip() {
    local token out i
    token="ready-$(date +%s%N)-$$"
    printf '%s\n' "$token" | kafka_tool org.apache.kafka.tools.ConsoleProducer \
        --bootstrap-server "$HOST:$KAFKA_PORT" --topic "$KAFKA_READY_TOPIC" \
        --sync --timeout 0 --request-required-acks all --request-timeout-ms 30000 \
        --producer-property max.block.ms=60000 >/dev/null 2>>"$KAFKA_OUT" || return 1
    # Earlier checks left their records consumed; read on until ours arrives.
    for ((i = 0; i < 10; i++)); do
        out="$(kafka_tool org.apache.kafka.tools.consumer.ConsoleConsumer \
            --bootstrap-server "$HOST:$KAFKA_PORT" --topic "$KAFKA_READY_TOPIC" \
            --group arroyo-readiness --from-beginning --max-messages 1 \
            --consumer-property fetch.max.wait.ms=50 \
            --timeout-ms 30000 2>>"$KAFKA_OUT")" || return 1
        [[ "$out" == *"$token"* ]] && return 0
        [[ -z "$out" ]] && return 1
    done
    return 1
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
    if ! kafka_round_trip; then
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

# ---------------------------------------------------------------------------
# Redis (native, Debian package redis-server)

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

redis_ping() {
    [[ "$(timeout 5 redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
}

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
    spawn_detached "$REDIS_OUT" redis-server --daemonize no --bind "$HOST" \
        --port "$REDIS_PORT" --save "" --appendonly no --dir "$REDIS_DIR" \
        --logfile "$REDIS_LOG" --pidfile "$REDIS_PID_FILE" "${tls_args[@]}"
    echo "$!" >"$REDIS_PID_FILE"
    REDIS_STARTED=1
}

redis_wait() {
    ((REDIS_STARTED)) || return 0
    local t0=$SECONDS pid
    pid="$(read_pid "$REDIS_PID_FILE")"
    until redis_ping; do
        if ! pid_alive "$pid"; then
            rm -f "$REDIS_PID_FILE"
            fail_broker redis "redis-server (pid $pid) exited during startup" "$REDIS_LOG" "$REDIS_OUT"
        fi
        if ((SECONDS - t0 >= REDIS_START_TIMEOUT)); then
            stop_pid "$pid" redis
            rm -f "$REDIS_PID_FILE"
            fail_broker redis "no PONG from $HOST:$REDIS_PORT after ${REDIS_START_TIMEOUT}s" "$REDIS_LOG" "$REDIS_OUT"
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

# ---------------------------------------------------------------------------
# RabbitMQ (native, Debian package rabbitmq-server)
#
# The server runs as the user running this script, from RabbitMQ's own scripts in
# /usr/lib/rabbitmq/bin, not through Debian's /usr/sbin wrappers: as root those
# switch to the rabbitmq user, who can neither enter /root (mode 700, where the data
# folder is by default) nor read root's Erlang cookie. HOME is the node's folder, so
# server and rabbitmqctl share one private cookie: $RABBITMQ_DIR/.erlang.cookie.

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

rabbitmqctl_() {
    env "${RABBITMQ_ENV[@]}" "$(rabbitmq_bin_dir)/rabbitmqctl" -n "$RABBITMQ_NODE" "$@"
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
    until timeout 30 env "${RABBITMQ_ENV[@]}" "$(rabbitmq_bin_dir)/rabbitmqctl" \
        -n "$RABBITMQ_NODE" -q await_startup --timeout 20 >/dev/null 2>&1; do
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
        timeout 60 env "${RABBITMQ_ENV[@]}" "$(rabbitmq_bin_dir)/rabbitmqctl" \
            -n "$RABBITMQ_NODE" -q stop "$RABBITMQ_PID_FILE" >/dev/null 2>&1 ||
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

# ---------------------------------------------------------------------------
# Schema registry (native): Apicurio Registry, whose /apis/ccompat/v7 API is the
# Confluent Schema Registry API. One JVM (Quarkus) on Java 21+, the release tarball
# from Maven Central, schemas in an H2 database file in $REGISTRY_DIR/data. The API
# is on REGISTRY_PORT, health (/health/ready) on the management port.

registry_set_paths() {
    REGISTRY_DIR="$BROKERS_DIR/registry"
    REGISTRY_PID_FILE="$REGISTRY_DIR/registry.pid"
    REGISTRY_LOG="$REGISTRY_DIR/registry.log"
    REGISTRY_URL="http://$HOST:$REGISTRY_PORT"
    REGISTRY_HEALTH_URL="http://$HOST:$REGISTRY_MANAGEMENT_PORT/health/ready"
}

# The major version (8, 17, 21, 25, ...) of a java executable, or nothing if it is
# not one. From the JDK's `release` file when there is one (no JVM to start), else
# from `java -version`.
java_major() {
    local java="$1" home version=""
    [[ -f "$java" && -x "$java" ]] || return 0
    home="$(readlink -f "$java")"
    home="${home%/bin/java}"
    if [[ -f "$home/release" ]]; then
        version="$(sed -nE 's/^JAVA_VERSION="([^"]*)".*/\1/p' "$home/release" 2>/dev/null)"
    fi
    if [[ -z "$version" ]]; then
        version="$("$java" -version 2>&1 | sed -nE '1s/.*version "([^"]*)".*/\1/p')" || true
    fi
    version="${version#1.}" # 1.8.0_402 -> 8
    version="${version%%[!0-9]*}"
    printf '%s' "$version"
}

# Choose the java for the registry (Apicurio $REGISTRY_VERSION needs Java
# $REGISTRY_JAVA_MIN+; Kafka keeps `java` / $JAVA_HOME): $ARROYO_REGISTRY_JAVA (a java
# executable or a JDK folder) if set; else the first of $JAVA_HOME/bin/java, `java`
# on PATH and /usr/lib/jvm/*/bin/java (newest first) that is new enough. Sets
# REGISTRY_JAVA and REGISTRY_JAVA_MAJOR; fails the registry when there is none.
registry_find_java() {
    local candidate major found=()
    if [[ -n "${ARROYO_REGISTRY_JAVA:-}" ]]; then
        candidate="$ARROYO_REGISTRY_JAVA"
        [[ -d "$candidate" ]] && candidate="${candidate%/}/bin/java"
        candidate="$(command -v -- "$candidate" 2>/dev/null)" || candidate="$ARROYO_REGISTRY_JAVA"
        major="$(java_major "$candidate")"
        [[ -n "$major" ]] ||
            fail_broker registry "ARROYO_REGISTRY_JAVA=$ARROYO_REGISTRY_JAVA is not a java executable (give the path of a Java $REGISTRY_JAVA_MIN+ bin/java, or of its JDK folder)"
        ((major >= REGISTRY_JAVA_MIN)) ||
            fail_broker registry "ARROYO_REGISTRY_JAVA=$ARROYO_REGISTRY_JAVA is Java $major; Apicurio Registry $REGISTRY_VERSION needs Java $REGISTRY_JAVA_MIN or newer"
        REGISTRY_JAVA="$candidate"
        REGISTRY_JAVA_MAJOR="$major"
        return 0
    fi
    local candidates=()
    [[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME/bin/java")
    candidate="$(command -v java 2>/dev/null)" && candidates+=("$candidate")
    # /usr/lib/jvm, newest major version first.
    local jvms=() line
    for candidate in /usr/lib/jvm/*/bin/java; do
        major="$(java_major "$candidate")"
        [[ -n "$major" ]] && jvms+=("$major $candidate")
    done
    if ((${#jvms[@]})); then
        while read -r line; do
            candidates+=("${line#* }")
        done < <(printf '%s\n' "${jvms[@]}" | sort -s -k1,1nr)
    fi
    for candidate in "${candidates[@]}"; do
        major="$(java_major "$candidate")"
        [[ -n "$major" ]] || continue
        if ((major >= REGISTRY_JAVA_MIN)); then
            REGISTRY_JAVA="$candidate"
            REGISTRY_JAVA_MAJOR="$major"
            return 0
        fi
        found+=("$candidate (Java $major)")
    done
    local seen="none"
    ((${#found[@]})) && seen="$(printf '%s, ' "${found[@]}")" && seen="${seen%, }"
    fail_broker registry "Apicurio Registry $REGISTRY_VERSION needs Java $REGISTRY_JAVA_MIN or newer, and none was found (looked at \$JAVA_HOME/bin/java, java on PATH and /usr/lib/jvm/*/bin/java; found: $seen). Install a JDK $REGISTRY_JAVA_MIN+ (e.g. under /usr/lib/jvm, such as Temurin 21 or 25), or set ARROYO_REGISTRY_JAVA to its bin/java (Kafka keeps using java / \$JAVA_HOME)."
}

registry_app_cached() {
    [[ -f "$REGISTRY_APP/.arroyo-complete" && "$(cat "$REGISTRY_APP/.arroyo-complete")" == "$REGISTRY_ARTIFACT" ]]
}

# Fetch and unpack the app (quarkus-run.jar + app/, lib/, quarkus/) once; later
# starts need no network. (Launched after Kafka, so a first download overlaps
# Kafka's start.)
registry_ensure_app() {
    registry_app_cached && return 0
    mkdir -p "$(dirname "$REGISTRY_APP")"
    exec 7>"$REGISTRY_APP.lock"
    flock -w 600 7 || die "registry: timed out waiting for another download of Apicurio Registry"
    if registry_app_cached; then
        exec 7>&-
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "registry: Apicurio Registry is not cached in $REGISTRY_APP and Maven (mvn) is not installed (apt-get install maven)"
    log "registry: fetching Apicurio Registry $REGISTRY_VERSION (about 150 MB) from Maven Central into $REGISTRY_APP ..."
    local tmp="$REGISTRY_APP.partial.$$" mvn_log="$REGISTRY_APP.mvn.log"
    rm -rf "$tmp"
    mkdir -p "$tmp/app"
    # From inside $tmp: no pom.xml there, so mvn runs without a project.
    if ! (cd "$tmp" && mvn -B -Dstyle.color=never dependency:copy \
        -Dartifact="$REGISTRY_ARTIFACT" -DoutputDirectory="$tmp") >"$mvn_log" 2>&1; then
        rm -rf "$tmp"
        fail_broker registry "mvn dependency:copy of $REGISTRY_ARTIFACT failed (is Maven Central reachable?)" "$mvn_log"
    fi
    if ! tar --no-same-owner -xzf "$tmp"/apicurio-registry-app-*.tar.gz -C "$tmp/app" 2>>"$mvn_log" ||
        [[ ! -f "$tmp/app/$REGISTRY_JAR" ]]; then
        rm -rf "$tmp"
        fail_broker registry "unpacking the Apicurio Registry tarball failed (no $REGISTRY_JAR)" "$mvn_log"
    fi
    rm -rf "$REGISTRY_APP"
    mv "$tmp/app" "$REGISTRY_APP"
    rm -rf "$tmp"
    printf '%s\n' "$REGISTRY_ARTIFACT" >"$REGISTRY_APP/.arroyo-complete"
    exec 7>&-
}

# One HTTP request; prints the response body; fails on no answer or a status >= 400
# (then says on stderr what came back: status and the start of the body).
# curl where installed, else Python's urllib (python3 is always there).
registry_http() {
    local method="$1" url="$2" body="${3:-}"
    if command -v curl >/dev/null 2>&1; then
        local args=(-sS --connect-timeout 2 --max-time 10 -X "$method" -w '\n%{http_code}') out code
        [[ -n "$body" ]] && args+=(-H "Content-Type: application/vnd.schemaregistry.v1+json" --data-binary "$body")
        out="$(curl "${args[@]}" "$url")" || return 1
        code="${out##*$'\n'}"
        out="${out%$'\n'*}"
        if [[ ! "$code" =~ ^[0-9]+$ ]] || ((code >= 400)); then
            out="${out//$'\n'/ }"
            printf '%s %s: HTTP %s: %.300s\n' "$method" "$url" "$code" "$out" >&2
            return 1
        fi
        printf '%s' "$out"
    else
        python3 -c '
import sys, urllib.error, urllib.request
method, url, body = sys.argv[1:4]
headers = {"Content-Type": "application/vnd.schemaregistry.v1+json"} if body else {}
req = urllib.request.Request(url, data=body.encode() if body else None, headers=headers, method=method)
try:
    with urllib.request.urlopen(req, timeout=10) as response:
        sys.stdout.write(response.read().decode())
except urllib.error.HTTPError as e:
    text = e.read().decode(errors="replace").replace("\n", " ")
    sys.exit(f"{method} {url}: HTTP {e.code}: {text[:300]}")
except Exception as e:
    sys.exit(f"{method} {url}: {e}")
' "$method" "$url" "$body"
    fi
}

registry_healthy() {
    registry_http GET "$REGISTRY_HEALTH_URL" >/dev/null 2>&1
}

# Register a small RECURSIVE Avro schema through the Confluent API and read it back
# by its id. It recurses as the arroyo.Value of Arroyo's envelope does, through a
# union, an array and a map: a registry that cannot take such schemas fails `up`
# here, not the first test that registers the envelope. (Apicurio 3.0.9 answers
# HTTP 500, a StackOverflowError, to the map case; it takes plain recursion through
# ["null", "Self"].) The same schema every time: on a registry that has it, the same
# id comes back.
registry_round_trip() {
    local schema='{\"type\":\"record\",\"name\":\"Readiness\",\"namespace\":\"arroyo\",\"fields\":[{\"name\":\"ok\",\"type\":\"boolean\"},{\"name\":\"next\",\"type\":[\"null\",\"Readiness\",{\"type\":\"array\",\"items\":\"Readiness\"},{\"type\":\"map\",\"values\":\"Readiness\"}],\"default\":null}]}'
    local out id
    out="$(registry_http POST "$REGISTRY_URL/apis/ccompat/v7/subjects/$REGISTRY_READY_SUBJECT/versions" \
        "{\"schema\":\"$schema\"}" 2>&1)" || { REGISTRY_LAST_ERROR="register: $out"; return 1; }
    [[ "$out" =~ \"id\":([0-9]+) ]] || { REGISTRY_LAST_ERROR="register: no id in '$out'"; return 1; }
    id="${BASH_REMATCH[1]}"
    out="$(registry_http GET "$REGISTRY_URL/apis/ccompat/v7/schemas/ids/$id" 2>&1)" ||
        { REGISTRY_LAST_ERROR="get schema $id: $out"; return 1; }
    [[ "$out" == *Readiness* ]] ||
        { REGISTRY_LAST_ERROR="get schema $id: unexpected '$out'"; return 1; }
}

# The java pid of our registry (started from this data folder, by this or an older
# version of this script, whatever the Apicurio version), or nothing.
registry_pid() {
    local pid
    pid="$(read_pid "$REGISTRY_PID_FILE")"
    if [[ -n "$pid" ]] && pid_alive "$pid" && [[ "$(cmdline_of "$pid")" == *" -Darroyo.registry.dir=$REGISTRY_DIR "*" -jar "* ]]; then
        printf '%s' "$pid"
    fi
}

# True if our registry process runs the app of REGISTRY_VERSION.
registry_pid_current() {
    [[ "$(cmdline_of "$1")" == *" -jar $REGISTRY_APP/$REGISTRY_JAR "* ]]
}

registry_start() {
    REGISTRY_STARTED=0
    local pid
    pid="$(registry_pid)"
    if [[ -n "$pid" ]] && ! registry_pid_current "$pid"; then
        local jar
        jar="$(cmdline_of "$pid")"
        jar="${jar##* -jar }"
        log "registry: pid $pid runs another Apicurio Registry (${jar% }); replacing it with $REGISTRY_VERSION (same data)"
        stop_pid "$pid" registry
    elif [[ -n "$pid" ]] && registry_healthy; then
        log "registry: already running (pid $pid) on $REGISTRY_URL"
        return 0
    elif [[ -n "$pid" ]]; then
        log "registry: pid $pid does not answer $REGISTRY_HEALTH_URL; restarting it"
        stop_pid "$pid" registry
    elif [[ -f "$REGISTRY_PID_FILE" ]]; then
        log "registry: stale pid file (process $(read_pid "$REGISTRY_PID_FILE") is gone); starting it again"
    fi
    rm -f "$REGISTRY_PID_FILE"
    [[ "$REGISTRY_PORT" != "$REGISTRY_MANAGEMENT_PORT" ]] ||
        die "registry: ARROYO_REGISTRY_PORT and ARROYO_REGISTRY_MANAGEMENT_PORT are both $REGISTRY_PORT; they must differ"
    require_free_ports registry "$REGISTRY_PORT" "$REGISTRY_MANAGEMENT_PORT"
    registry_find_java
    registry_ensure_app
    mkdir -p "$REGISTRY_DIR/data"
    : >"$REGISTRY_LOG"
    log "registry: starting Apicurio Registry $REGISTRY_VERSION on $REGISTRY_URL (Java $REGISTRY_JAVA_MAJOR: $REGISTRY_JAVA)"
    # Working directory: our folder (Quarkus reads .env and config/ from it, not from
    # wherever the script was called). -Darroyo.registry.dir marks the process as ours.
    # API on REGISTRY_PORT, health on the management port, both on 127.0.0.1 only.
    # Global compatibility rule NONE: nothing is refused for compatibility unless a
    # subject sets its own level (PUT /config/<subject>). WRITE_DELAY=0: every
    # registration is on disk at once, so a kill -9 loses no schema (ids in Kafka
    # records keep pointing at the right schema after a restart). An H2 file written
    # by 3.0.x is upgraded in place at the first start (and is then 3.3-only).
    spawn_detached "$REGISTRY_LOG" env -C "$REGISTRY_DIR" "$REGISTRY_JAVA" \
        -Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Darroyo.registry.dir="$REGISTRY_DIR" \
        -Dquarkus.http.host="$HOST" -Dquarkus.http.port="$REGISTRY_PORT" \
        -Dquarkus.management.host="$HOST" -Dquarkus.management.port="$REGISTRY_MANAGEMENT_PORT" \
        -Dapicurio.rules.global.compatibility=NONE \
        -Dapicurio.datasource.url="jdbc:h2:file:$REGISTRY_DIR/data/registry;WRITE_DELAY=0" \
        -jar "$REGISTRY_APP/$REGISTRY_JAR"
    echo "$!" >"$REGISTRY_PID_FILE"
    REGISTRY_STARTED=1
}

# Ready = /health/ready answers, then the recursive-schema round trip works. A
# registry that is healthy but keeps failing the round trip (it cannot take the
# schema) fails after REGISTRY_ROUND_TRIP_GRACE seconds, not at the start timeout.
registry_wait() {
    ((REGISTRY_STARTED)) || return 0
    local pid deadline=$((SECONDS + REGISTRY_START_TIMEOUT)) t0=$SECONDS healthy_since=""
    pid="$(read_pid "$REGISTRY_PID_FILE")"
    REGISTRY_LAST_ERROR="no answer from $REGISTRY_HEALTH_URL"
    while :; do
        if registry_healthy; then
            [[ -n "$healthy_since" ]] || healthy_since=$SECONDS
            registry_round_trip && break
            if ((SECONDS - healthy_since >= REGISTRY_ROUND_TRIP_GRACE)); then
                registry_stop quiet
                fail_broker registry "healthy, but registering a recursive Avro schema under $REGISTRY_READY_SUBJECT through $REGISTRY_URL/apis/ccompat/v7 and reading it back still fails after ${REGISTRY_ROUND_TRIP_GRACE}s ($REGISTRY_LAST_ERROR)" "$REGISTRY_LOG"
            fi
        fi
        if ! pid_alive "$pid"; then
            rm -f "$REGISTRY_PID_FILE"
            fail_broker registry "the registry process (pid $pid) exited during startup" "$REGISTRY_LOG"
        fi
        if ((SECONDS >= deadline)); then
            registry_stop quiet
            fail_broker registry "not ready after ${REGISTRY_START_TIMEOUT}s ($REGISTRY_LAST_ERROR)" "$REGISTRY_LOG"
        fi
        sleep 0.25
    done
    log "registry: ready after $((SECONDS - t0))s (pid $pid)"
}

registry_stop() { stop_started registry "$(registry_pid)" "$REGISTRY_PID_FILE" "${1:-}"; }

registry_status() {
    local pid
    pid="$(registry_pid)"
    if [[ -n "$pid" ]] && ! registry_pid_current "$pid"; then
        echo "registry: running an older Apicurio Registry (pid $pid), not $REGISTRY_VERSION; 'up registry' replaces it"
        return 1
    elif [[ -n "$pid" ]] && registry_healthy; then
        echo "registry: running (pid $pid) on $REGISTRY_URL, Confluent API $REGISTRY_URL/apis/ccompat/v7"
    elif [[ -n "$pid" ]]; then
        echo "registry: not answering (pid $pid alive, $REGISTRY_HEALTH_URL not ready)"
        return 1
    else
        echo "registry: not running"
        return 1
    fi
}

# ---------------------------------------------------------------------------
# Docker Compose (where a Docker engine answers)

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

# ---------------------------------------------------------------------------
# commands

print_exports() {
    local broker
    for broker in "$@"; do
        case "$broker" in
        kafka)
            echo "export ARROYO_KAFKA=$HOST:$KAFKA_PORT"
            echo "export ARROYO_KAFKA_TLS=$HOST:$KAFKA_TLS_PORT"
            ;;
        redis)
            echo "export ARROYO_REDIS=$HOST:$REDIS_PORT"
            if [[ "$MODE" == docker ]] || redis_has_tls; then
                echo "export ARROYO_REDIS_TLS=$HOST:$REDIS_TLS_PORT"
            fi
            ;;
        rabbitmq)
            echo "export ARROYO_AMQP=amqp://guest:guest@$HOST:$AMQP_PORT/"
            echo "export ARROYO_AMQPS=amqps://guest:guest@$HOST:$AMQPS_PORT/"
            ;;
        registry)
            echo "export ARROYO_REGISTRY=http://$HOST:$REGISTRY_PORT/apis/ccompat/v7"
            ;;
        esac
    done
    echo "export ARROYO_TLS_CA=$TLS_DIR/ca.pem"
    echo "export ARROYO_TLS_CLIENT_CERT=$TLS_DIR/client.pem"
    echo "export ARROYO_TLS_CLIENT_KEY=$TLS_DIR/client.key"
    echo "export ARROYO_BROKERS_DIR=$BROKERS_DIR"
}

cmd_up() {
    if [[ "$MODE" == docker ]]; then
        docker_up "$@"
    else
        tls_ensure
        local broker
        # Launch everything first, then wait: the JVMs and the Erlang VM start together.
        for broker in redis rabbitmq kafka registry; do
            if [[ " $* " == *" $broker "* ]]; then
                "${broker}_start"
            fi
        done
        # Wait for them side by side; each wait reports its own failure and log.
        local pids=() failed=0 pid
        for broker in redis rabbitmq kafka registry; do
            if [[ " $* " == *" $broker "* ]]; then
                "${broker}_wait" &
                pids+=("$!")
            fi
        done
        for pid in "${pids[@]}"; do
            wait "$pid" || failed=1
        done
        ((failed == 0)) || exit 1
    fi
    print_exports "$@"
}

cmd_down() {
    if [[ "$MODE" == docker ]]; then
        compose rm --stop --force -v "$@" >&2
        return 0
    fi
    local broker
    for broker in "$@"; do
        "${broker}_stop"
    done
}

cmd_status() {
    if [[ "$MODE" == docker ]]; then
        docker_status "$@"
        return
    fi
    local broker rc=0
    for broker in "$@"; do
        "${broker}_status" || rc=1
    done
    return "$rc"
}

main() {
    (($# >= 1)) || usage
    local command="$1"
    shift
    case "$command" in
    up | down | status) ;;
    -h | --help | help) usage ;;
    *) log "unknown command '$command'"; usage ;;
    esac

    local brokers=() name
    for name in "$@"; do
        case "$name" in
        kafka | redis | rabbitmq | registry) [[ " ${brokers[*]-} " == *" $name "* ]] || brokers+=("$name") ;;
        *) log "unknown broker '$name' (expected kafka, redis, rabbitmq or registry)"; usage ;;
        esac
    done
    ((${#brokers[@]})) || brokers=("${ALL_BROKERS[@]}")

    mkdir -p "$BROKERS_DIR"
    BROKERS_DIR="$(cd "$BROKERS_DIR" && pwd -P)"
    TLS_DIR="$BROKERS_DIR/tls"
    kafka_set_paths
    redis_set_paths
    rabbitmq_set_paths
    registry_set_paths

    case "${ARROYO_BROKERS_MODE:-auto}" in
    docker) MODE=docker ;;
    native) MODE=native ;;
    auto) if docker_engine_answers; then MODE=docker; else MODE=native; fi ;;
    *) die "ARROYO_BROKERS_MODE must be auto, docker or native, not '${ARROYO_BROKERS_MODE}'" ;;
    esac

    # One up/down at a time per data folder (parallel test workers may all call up).
    if [[ "$command" != status ]]; then
        exec 9>"$BROKERS_DIR/.lock"
        flock -w 600 9 || die "timed out waiting for another brokers.sh on $BROKERS_DIR"
    fi

    "cmd_$command" "${brokers[@]}"
}

main "$@"
