#!/usr/bin/env bash
# compose/brokers.sh: start, stop or check the brokers Arroyo's tests talk to.
#
#   compose/brokers.sh up|down|status [--kafka-nodes N] [kafka] [redis] [rabbitmq] [registry]
#                                                                    (no names = all)
#   eval "$(compose/brokers.sh up)"     # exports ARROYO_KAFKA, ARROYO_REDIS, ...
#
# Apache Kafka 4.1.2 (KRaft, one combined broker+controller node; with --kafka-nodes 3
# a cluster of three such nodes, replication factor 3), Redis, RabbitMQ and
# a schema registry (Apicurio Registry, whose /apis/ccompat/v7 speaks the Confluent
# Schema Registry API) on 127.0.0.1. Where a Docker engine answers, the containers of
# compose/docker-compose.yml; elsewhere native processes: Kafka and Apicurio from
# Maven Central (Kafka on the machine's Java 17+, Apicurio on a Java 21+ found beside
# it, see registry_find_java), Redis and RabbitMQ from Debian packages.
# Data, logs, pid files and the test TLS certificates live in one folder,
# ARROYO_BROKERS_DIR. See compose/README.md for the environment variables.
#
# Only the `export` lines of `up` go to stdout; all progress goes to stderr.
#
# This file parses the command line and dispatches; the recipes are in compose/lib/:
# common.sh (shared helpers), tls.sh, docker.sh, and one file per broker
# (kafka.sh with kafka_cluster.sh, redis.sh, rabbitmq.sh, registry.sh). A broker file
# defines, for
# BROKER in ALL_BROKERS:
#   BROKER_set_paths   set its folder, pid and log file names under $BROKERS_DIR
#   BROKER_start       launch it unless it runs (set BROKER_STARTED=1 if launched)
#   BROKER_wait        wait until a broker it launched accepts work, or fail
#   BROKER_stop [quiet]  stop it if this script started it from $BROKERS_DIR
#   BROKER_status      print one line; return 1 unless it runs
#   BROKER_exports     print its `export ARROYO_...` lines

# Lets `shellcheck -x -a compose/brokers.sh` follow (and check) the sourced files.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly ALL_BROKERS=(kafka redis rabbitmq registry)
# The order `up` launches them in: the quick ones first, the JVMs last.
readonly START_ORDER=(redis rabbitmq kafka registry)

source "$SCRIPT_DIR/lib/common.sh"
source "$SCRIPT_DIR/lib/tls.sh"
source "$SCRIPT_DIR/lib/kafka.sh"
source "$SCRIPT_DIR/lib/kafka_cluster.sh"
source "$SCRIPT_DIR/lib/redis.sh"
source "$SCRIPT_DIR/lib/rabbitmq.sh"
source "$SCRIPT_DIR/lib/registry.sh"
source "$SCRIPT_DIR/lib/docker.sh"

usage() {
    cat >&2 <<EOF
usage: $0 up|down|status [--kafka-nodes N] [kafka] [redis] [rabbitmq] [registry]

  up      start the brokers (no-op for those already running), wait until each
          accepts work, print their addresses as shell export lines:
              eval "\$($0 up)"
  down    stop the brokers this script started from ARROYO_BROKERS_DIR
  status  one line per broker; exit 0 only if all named brokers run

  --kafka-nodes N  Kafka as a cluster of N (3 to $KAFKA_MAX_NODES) nodes, each a broker and
          a KRaft controller, in ARROYO_BROKERS_DIR/kafka-<id>, replication factor 3,
          min.insync.replicas 2 (no TLS listener); \`up\` exports the bootstrap list
          ARROYO_KAFKA=127.0.0.1:19092,127.0.0.1:29092,... ; \`down\` (with or
          without it) stops every node. Ports: ARROYO_KAFKA_NODE_PORTS and
          ARROYO_KAFKA_NODE_CONTROLLER_PORTS (comma-separated, one per node).

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


# is_one_of WORD WORDS...: true if WORD is one of WORDS.
is_one_of() {
    local word="$1" each
    shift
    for each in "$@"; do
        [[ "$word" == "$each" ]] && return 0
    done
    return 1
}

print_exports() {
    local broker
    for broker in "$@"; do
        "${broker}_exports"
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
        for broker in "${START_ORDER[@]}"; do
            if is_one_of "$broker" "$@"; then
                "${broker}_start"
            fi
        done
        # Wait for them side by side; each wait reports its own failure and log.
        local pids=() failed=0 pid
        for broker in "${START_ORDER[@]}"; do
            if is_one_of "$broker" "$@"; then
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
        docker_down "$@"
        return 0
    fi
    local broker
    for broker in "$@"; do
        "${broker}_stop"
    done
    # The nodes of a cluster (--kafka-nodes) stop with or without the option.
    if ((KAFKA_NODES == 1)) && is_one_of kafka "$@"; then
        kafka_cluster_stop
    fi
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

    local nodes=1 names=()
    while (($#)); do
        case "$1" in
        --kafka-nodes) (($# >= 2)) || { log "--kafka-nodes needs a number"; usage; }; nodes="$2"; shift 2 ;;
        --kafka-nodes=*) nodes="${1#*=}"; shift ;;
        -*) log "unknown option '$1'"; usage ;;
        *) names+=("$1"); shift ;;
        esac
    done

    local brokers=() name
    for name in "${names[@]}"; do
        is_one_of "$name" "${ALL_BROKERS[@]}" || {
            local known="${ALL_BROKERS[*]}"
            known="${known// /, }"
            log "unknown broker '$name' (expected ${known%, *} or ${known##*, })"
            usage
        }
        is_one_of "$name" "${brokers[@]}" || brokers+=("$name")
    done
    ((${#brokers[@]})) || brokers=("${ALL_BROKERS[@]}")

    mkdir -p "$BROKERS_DIR"
    BROKERS_DIR="$(cd "$BROKERS_DIR" && pwd -P)"
    TLS_DIR="$BROKERS_DIR/tls"
    case "${ARROYO_BROKERS_MODE:-auto}" in
    docker) MODE=docker ;;
    native) MODE=native ;;
    auto) if docker_engine_answers; then MODE=docker; else MODE=native; fi ;;
    *) die "ARROYO_BROKERS_MODE must be auto, docker or native, not '${ARROYO_BROKERS_MODE}'" ;;
    esac
    if [[ "$nodes" != 1 ]]; then
        [[ "$MODE" == native ]] || die "--kafka-nodes runs native nodes only (ARROYO_BROKERS_MODE=native), not with Docker"
        kafka_use_cluster "$nodes"
    fi

    local broker
    for broker in "${ALL_BROKERS[@]}"; do
        "${broker}_set_paths"
    done

    # One up/down at a time per data folder (parallel test workers may all call up).
    if [[ "$command" != status ]]; then
        exec 9>"$BROKERS_DIR/.lock"
        flock -w 600 9 || die "timed out waiting for another brokers.sh on $BROKERS_DIR"
    fi

    "cmd_$command" "${brokers[@]}"
}

main "$@"
