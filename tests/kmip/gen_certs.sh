#!/bin/sh
# Makes the certificates of the KMIP tests in directory $1 with the openssl CLI:
#   ca         the trusted CA; server (SAN localhost + 127.0.0.1, serverAuth) and
#              client (clientAuth: PyKMIP refuses client certificates without it)
#   rogue-ca   an untrusted CA; rogue-client is a client certificate it signed
#   wrongname  a server certificate from ca for another host name only
set -eu
cd "$1"
ossl() { openssl "$@" 2>/dev/null; }
mkca() {
    ossl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$1" -keyout "$1.key" -out "$1.crt" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
}
# mkcert NAME CA EXTENSIONS
mkcert() {
    ossl req -newkey rsa:2048 -nodes -subj "/CN=$1" -keyout "$1.key" -out "$1.csr"
    printf '%b' "$3" > "$1.ext"
    ossl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -set_serial "0x$(openssl rand -hex 8)" \
        -days 2 -extfile "$1.ext" -out "$1.crt"
    rm -f "$1.csr" "$1.ext"
}
mkca ca
mkca rogue-ca
mkcert server ca "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n"
mkcert client ca "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n"
mkcert rogue-client rogue-ca "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n"
mkcert wrongname ca "subjectAltName=DNS:kms.example.com\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n"
chmod 600 ./*.key
openssl verify -CAfile ca.crt server.crt client.crt wrongname.crt >/dev/null
