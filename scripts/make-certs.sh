#!/bin/sh
# make-certs.sh: the stack's certificates for local use.
#
#   scripts/make-certs.sh [HOSTNAME] [DIR]
#
# Writes, under DIR (default ./certs):
#
#   domain.crt, domain.key   what Traefik shows registry clients: self-signed, valid
#                            for localhost, 127.0.0.1, ::1 and HOSTNAME if given. It is
#                            its own CA (basicConstraints CA:TRUE), so docker can trust
#                            it directly:
#       mkdir -p /etc/docker/certs.d/127.0.0.1:5043                   (as root)
#       cp certs/domain.crt /etc/docker/certs.d/127.0.0.1:5043/ca.crt
#
#   auth-hop/                the TLS hop between Traefik and registry-auth, mounted
#                            by those two containers only (docker-compose.yml):
#     ca.crt                 a private CA made for this stack alone; its key is
#                            thrown away once the two certificates below are signed,
#                            so nobody can issue another (run the script again for
#                            new ones)
#     auth.crt, auth.key     registry-auth's server certificate (DNS:auth, the
#                            service's name on the compose network); the key is
#                            group 65532 (the image's group), mode 640, when the
#                            script may chgrp, else 644 and a note to fix it
#     traefik.crt, traefik.key
#                            Traefik's client certificate for forwardAuth (mode 600:
#                            Traefik runs as root)
#
# For anything but a test machine, use a certificate from a real CA for domain.crt.
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

# The forwardAuth hop: a private CA, a server certificate for auth, a client one for Traefik.
hop="$dir/auth-hop"
mkdir -p "$hop"
chmod 755 "$hop"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 -nodes -days "$days" \
	-subj "/O=registry-auth/CN=registry-auth stack hop CA" \
	-addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" \
	-keyout "$tmp/hop-ca.key" -out "$tmp/ca.crt" 2>/dev/null
# issue NAME CN USAGE [SAN]: NAME.crt and NAME.key signed by the hop CA.
issue() {
	{
		echo "basicConstraints = critical, CA:FALSE"
		echo "keyUsage = critical, digitalSignature"
		echo "extendedKeyUsage = $3"
		[ -z "${4:-}" ] || echo "subjectAltName = $4"
	} >"$tmp/$1.ext"
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=registry-auth/CN=$2" \
		-keyout "$tmp/$1.key" -out "$tmp/$1.csr" 2>/dev/null
	openssl x509 -req -sha256 -days "$days" -in "$tmp/$1.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/hop-ca.key" \
		-set_serial "0x$(openssl rand -hex 16)" -extfile "$tmp/$1.ext" -out "$tmp/$1.crt" 2>/dev/null
}
issue auth auth serverAuth DNS:auth
issue traefik traefik clientAuth
chmod 644 "$tmp/ca.crt" "$tmp/auth.crt" "$tmp/traefik.crt"
chmod 600 "$tmp/traefik.key"
# registry-auth runs as 65532:65532 and must read its key.
if chgrp 65532 "$tmp/auth.key" 2>/dev/null; then
	chmod 640 "$tmp/auth.key"
else
	chmod 644 "$tmp/auth.key"
	echo "note: could not chgrp 65532 $hop/auth.key, so it is readable by every local user; as root: chgrp 65532 $hop/auth.key && chmod 640 $hop/auth.key" >&2
fi
for f in ca.crt auth.crt auth.key traefik.crt traefik.key; do
	mv "$tmp/$f" "$hop/$f"
done
echo "wrote $hop/: ca.crt, auth.crt and auth.key (DNS:auth), traefik.crt and traefik.key (client)"
