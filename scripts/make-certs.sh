#!/bin/sh
# make-certs.sh: a self-signed certificate for local use, where Traefik reads it.
#
#   scripts/make-certs.sh [HOSTNAME] [DIR]
#
# Writes DIR/domain.crt and DIR/domain.key (DIR defaults to ./certs), valid for
# localhost, 127.0.0.1, ::1 and HOSTNAME if given. The certificate is its own CA
# (basicConstraints CA:TRUE), so docker can trust it directly:
#
#   mkdir -p /etc/docker/certs.d/127.0.0.1:5043                       (as root)
#   cp certs/domain.crt /etc/docker/certs.d/127.0.0.1:5043/ca.crt
#
# For anything but a test machine, use a certificate from a real CA.
set -eu

host="${1:-}"
dir="${2:-certs}"
days="${DAYS:-825}"

command -v openssl >/dev/null 2>&1 || { echo "make-certs.sh: openssl not found" >&2; exit 1; }

san="DNS:localhost,IP:127.0.0.1,IP:::1"
cn="localhost"
if [ -n "$host" ]; then
	case "$host" in
	*[!0-9.]*) case "$host" in *:*) san="$san,IP:$host" ;; *) san="$san,DNS:$host" ;; esac ;;
	*) san="$san,IP:$host" ;;
	esac
	cn="$host"
fi

mkdir -p "$dir"
umask 077
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/openssl.cnf" <<CNF
[req]
distinguished_name = dn
x509_extensions = ext
prompt = no
[dn]
CN = $cn
O = registry-auth local CA
[ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, keyCertSign
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
subjectAltName = $san
CNF

openssl req -x509 -newkey rsa:2048 -sha256 -nodes -days "$days" \
	-config "$tmp/openssl.cnf" \
	-keyout "$tmp/domain.key" -out "$tmp/domain.crt" 2>/dev/null

# Traefik runs as root in its container and reads the key; the certificate is public.
chmod 600 "$tmp/domain.key"
chmod 644 "$tmp/domain.crt"
mv "$tmp/domain.key" "$dir/domain.key"
mv "$tmp/domain.crt" "$dir/domain.crt"

echo "wrote $dir/domain.crt and $dir/domain.key for $san"
