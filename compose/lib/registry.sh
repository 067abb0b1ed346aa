# shellcheck shell=bash
# compose/lib/registry.sh: the schema registry (native): Apicurio Registry, whose
# /apis/ccompat/v7 API is the Confluent Schema Registry API. One JVM (Quarkus) on Java
# 21+, the release tarball from Maven Central (cached), schemas in an H2 database file
# in $REGISTRY_DIR/data. The API is on REGISTRY_PORT, health (/health/ready) on the
# management port. Sourced by compose/brokers.sh.

# Apicurio Registry. 3.3 needs Java 21+ (3.0.9 ran on 17 but answers HTTP 500, a
# StackOverflowError in its Avro canonicalizer, to Avro schemas that recurse through
# a map, such as Arroyo's envelope with its arroyo.Value).
readonly REGISTRY_VERSION=3.3.3
readonly REGISTRY_JAVA_MIN=21
readonly REGISTRY_PORT="${ARROYO_REGISTRY_PORT:-8081}"
readonly REGISTRY_MANAGEMENT_PORT="${ARROYO_REGISTRY_MANAGEMENT_PORT:-9081}" # /health
readonly REGISTRY_START_TIMEOUT="${ARROYO_REGISTRY_START_TIMEOUT:-90}"        # seconds
readonly REGISTRY_ROUND_TRIP_GRACE=15 # healthy but the readiness round trip fails
readonly REGISTRY_APP="$CACHE_DIR/apicurio-$REGISTRY_VERSION"
readonly REGISTRY_ARTIFACT="io.apicurio:apicurio-registry-app:$REGISTRY_VERSION:tar.gz:all"
readonly REGISTRY_JAR=quarkus-run.jar # Quarkus fast-jar layout: app/, lib/, quarkus/
readonly REGISTRY_READY_SUBJECT=arroyo-readiness-value

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
        await_ports_closed "$REGISTRY_PORT" "$REGISTRY_MANAGEMENT_PORT"
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

registry_exports() {
    echo "export ARROYO_REGISTRY=http://$HOST:$REGISTRY_PORT/apis/ccompat/v7"
}
