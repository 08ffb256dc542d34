#!/bin/sh
# make-vectors.sh: recreates the htpasswd and groups fixtures in this directory.
#
#   internal/htpasswd/testdata/make-vectors.sh
#
# Needs Apache's own htpasswd (Debian: apt-get install apache2-utils), openssl and perl
# (whose crypt() is the C library's, libxcrypt on Debian, which also makes $2a$ $2b$ $2x$).
# Salts are random, so every run writes different hashes for the same passwords; the tests
# read the checked-in files, and their tables know only users, passwords and line numbers,
# which this script keeps stable. Keep each plaintext password in the comment above its hash
# (STYLE.md rule 10). Some lines end in CRLF on purpose: testdata/.gitattributes keeps git
# from touching them.
set -eu

cd "$(dirname "$0")"
for tool in htpasswd openssl perl; do
	command -v "$tool" >/dev/null 2>&1 || { echo "make-vectors.sh: $tool not found (apt-get install apache2-utils openssl perl)" >&2; exit 1; }
done

# hashof prints only the hash of the `user:hash` line htpasswd -n prints.
hashof() { htpasswd "$@" | sed -n '1s/^[^:]*://p'; }

# bcryptsalt prints a random 22-character bcrypt salt; the last character carries only two
# bits, so it is one of . O e u (as crypt_gensalt writes it).
bcryptsalt() {
	perl -e '@c = ("." , "/", "A".."Z", "a".."z", "0".."9");
		print join("", map { $c[int rand @c] } 1..21), (".", "O", "e", "u")[int rand 4];'
}

# libcrypt PASSWORD SETTING prints crypt(3) of the password with that salt setting.
libcrypt() { perl -e 'print crypt($ARGV[0], $ARGV[1]), "\n"' "$1" "$2"; }

# shquote prints its argument quoted for sh when it needs quoting.
shquote() {
	case $1 in
	'' | *[!A-Za-z0-9_./=:@%+-]*) printf "'%s'" "$(printf %s "$1" | sed "s/'/'\\\\''/g")" ;;
	*) printf %s "$1" ;;
	esac
}

# entry USER PASSWORD COMMAND... prints the comment block and the line of one vector: the
# password, the command as one would type it (the helpers above spelled out), and the hash
# the command printed.
entry() {
	user=$1 password=$2
	shift 2
	case $1 in
	hashof) shown=htpasswd ;;
	libcrypt) shown="perl -e 'print crypt(\$ARGV[0], \$ARGV[1])'" ;;
	*) shown=$(shquote "$1") ;;
	esac
	hash=$("$@")
	shift
	for arg in "$@"; do shown="$shown $(shquote "$arg")"; done
	printf '# password: %s\n# made by: %s\n%s:%s\n' "$password" "$shown" "$user" "$hash"
}

long80=0123456789012345678901234567890123456789012345678901234567890123456789-past-72!

# formats.htpasswd: one user per hash format Apache accepts on Linux.
{
	cat <<'EOF'
# Every hash format Apache httpd accepts on Linux, one user each. Made by make-vectors.sh.
# Each entry: the plaintext password, then the exact command that printed the hash.
EOF
	entry bcrypt4 'correct horse battery staple' hashof -nbB -C 4 bcrypt4 'correct horse battery staple'
	entry bcrypt5 'pässwörd-ünïcode' hashof -nbB bcrypt5 'pässwörd-ünïcode'
	entry bcrypt10 'Tr0ub4dor&3' hashof -nbB -C 10 bcrypt10 'Tr0ub4dor&3'
	entry bcrypt-colon 'a:b:c' hashof -nbB -C 4 bcrypt-colon 'a:b:c'
	entry bcrypt-long80 "$long80" hashof -nbB -C 4 bcrypt-long80 "$long80"
	entry apr1 'apr1-secret' hashof -nbm apr1 'apr1-secret'
	entry sha1 'sha1-secret' hashof -nbs sha1 'sha1-secret'
	entry sha256 'sha256-secret' hashof -nb2 sha256 'sha256-secret'
	entry sha256-rounds 'sha256 rounds' hashof -nb2 -r 10000 sha256-rounds 'sha256 rounds'
	entry sha512 'sha512-secret' hashof -nb5 sha512 'sha512-secret'
	entry sha512-rounds 'sha512 rounds' hashof -nb5 -r 1000 sha512-rounds 'sha512 rounds'
	entry openssl-md5 'md5crypt-secret' openssl passwd -1 'md5crypt-secret'
	entry openssl-apr1 'openssl-apr1' openssl passwd -apr1 'openssl-apr1'
	entry openssl-sha256 'openssl-sha256' openssl passwd -5 'openssl-sha256'
	entry openssl-sha512 'openssl-sha512' openssl passwd -6 'openssl-sha512'
	entry crypt-2a 'libxcrypt 2a' libcrypt 'libxcrypt 2a' "\$2a\$04\$$(bcryptsalt)"
	entry crypt-2b 'libxcrypt 2b' libcrypt 'libxcrypt 2b' "\$2b\$04\$$(bcryptsalt)"
	entry crypt-2x 'libxcrypt 2x' libcrypt 'libxcrypt 2x' "\$2x\$04\$$(bcryptsalt)"
	entry crypt-md5 'libxcrypt md5' libcrypt 'libxcrypt md5' "\$1\$$(openssl rand -hex 4)\$"
} >formats.htpasswd

# bcrypt-2x-8bit.htpasswd: $2x$ (crypt_blowfish's "buggy" variant) with a non-ASCII password,
# where it differs from $2a$/$2y$; Apache's crypt_blowfish and libxcrypt emulate the bug.
{
	echo '# $2x$ hash of a password with 8-bit characters. Made by make-vectors.sh.'
	entry legacy2x 'pässwort' libcrypt 'pässwort' "\$2x\$04\$$(bcryptsalt)"
} >bcrypt-2x-8bit.htpasswd

# refused.htpasswd: DES crypt and plain text lines, which the service skips, between good ones.
{
	echo '# DES and plain-text entries are refused; the others load. Made by make-vectors.sh.'
	entry good1 'good-one' hashof -nbB -C 4 good1 'good-one'
	# htpasswd warns that -d reads 8 characters and that -p may not work: both are the point.
	entry des 'longpassword' hashof -nbd des 'longpassword' 2>/dev/null
	entry plain 'plain-secret' hashof -nbp plain 'plain-secret' 2>/dev/null
	entry good2 'good-two' hashof -nbm good2 'good-two'
} >refused.htpasswd

# apache.htpasswd: a file as people keep them: comments, blank and indented lines, CRLF line
# ends, a duplicate user, a line without a colon, extra fields, no newline at the end.
crlf() { printf '%s\r\n' "$@"; }
{
	crlf '# Registry users. Managed with htpasswd(1); see make-vectors.sh.'
	crlf ''
	crlf '# password: alice-pw' '# made by: htpasswd -nbB -C 4 alice alice-pw'
	crlf "alice:$(hashof -nbB -C 4 alice alice-pw)"
	printf '   \t\r\n'
	printf '# password: bob-pw\n# made by: htpasswd -nbm bob bob-pw\n'
	printf '   bob:%s  \t\n' "$(hashof -nbm bob bob-pw)"
	printf '# password: carol-pw (the fields after the hash are ignored, as in Apache)\n'
	printf '# made by: htpasswd -nb2 carol carol-pw\n'
	printf '\tcarol:%s:Carol Example:room 42\n' "$(hashof -nb2 carol carol-pw)"
	printf '# duplicate: Apache uses the first alice, so this password must not work\n'
	printf '# password: alice-second\n# made by: htpasswd -nbB -C 4 alice alice-second\n'
	printf 'alice:%s\n' "$(hashof -nbB -C 4 alice alice-second)"
	crlf 'this line has no colon'
	crlf '    # an indented comment'
	crlf '# password: dave-pw' '# made by: htpasswd -nbs dave dave-pw'
	crlf "dave:$(hashof -nbs dave dave-pw)"
	printf '# password: erin-pw\n# made by: htpasswd -nb5 erin erin-pw\n'
	printf 'erin:%s' "$(hashof -nb5 erin erin-pw)"
} >apache.htpasswd

# apache.groups: mod_authz_groupfile's format with the same kinds of decoration.
{
	printf '# Groups of the registry users (mod_authz_groupfile). Made by make-vectors.sh.\n'
	printf '\n'
	printf 'pusher: alice bob\n'
	printf 'readers:\tcarol   dave\r\n'
	printf '  # members add up across lines of the same group\n'
	printf 'pusher:\t%s %s\n' "'a b'" '"c\"d"'
	printf '\t\n'
	printf 'pusher : erin\n'
	printf 'admins:alice\n'
	printf 'admins:   \t bob\t\terin  \n'
	printf 'nobody:\n'
	printf 'ghosts: frank alice\n'
} >apache.groups

# broken.htpasswd: damaged hashes no tool makes, written by hand; each must be reported at
# load. The first one is good (made once by `htpasswd -nbB -C 4 fine fine-pw`) and is kept
# verbatim, so this file is the same on every run.
cat >broken.htpasswd <<'END'
# Damaged hashes, written by hand in make-vectors.sh; only "fine" loads.
# password: fine-pw
# made by: htpasswd -nbB -C 4 fine fine-pw
fine:$2y$04$elwPmXwtJIq7yHwiJOhiQOKtZjQRha6J/laFLMCAUqkqPaeHyzKca
truncated-bcrypt:$2y$04$elwPmXwtJIq7yHwiJOhiQOKtZjQRha6J/laFLMCAUqk
bcrypt-cost-99:$2y$99$elwPmXwtJIq7yHwiJOhiQOKtZjQRha6J/laFLMCAUqkqPaeHyzKca
sha-not-base64:{SHA}not*base64*at*all=
sha-too-short:{SHA}c2hvcnQ=
apr1-no-hash:$apr1$onlysalt
sha256-bad-rounds:$5$rounds=many$saltsalt$b7yl6VNaYcuvUY43g6Q/Mtmggt5oYDFItukX7oYMYY.
sha512-short:$6$saltsalt$tooShort
empty-hash:
:$2y$04$elwPmXwtJIq7yHwiJOhiQOKtZjQRha6J/laFLMCAUqkqPaeHyzKca
END

# empty.htpasswd: comments and blank lines only.
printf '# no users yet\n\n   \n# add one with: registry-auth hash USER >> FILE\n' >empty.htpasswd

echo "make-vectors.sh: wrote $(ls *.htpasswd *.groups | tr '\n' ' ')"
