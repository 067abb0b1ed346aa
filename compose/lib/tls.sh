# shellcheck shell=bash
# compose/lib/tls.sh: one private test CA, a server certificate for 127.0.0.1/localhost
# and a client certificate, made once with openssl in $TLS_DIR and shared by all
# three brokers; and the check that a TLS port hands out that certificate.

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

# A TLS handshake that verifies the server certificate against our CA.
tls_handshake_ok() {
    local port="$1"
    timeout 10 openssl s_client -connect "$HOST:$port" -servername localhost \
        -CAfile "$TLS_DIR/ca.pem" -verify_return_error -brief </dev/null >/dev/null 2>&1
}

