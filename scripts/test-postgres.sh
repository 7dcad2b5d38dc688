#!/usr/bin/env bash
# Runs a command with a throwaway PostgreSQL 15 for the tests, and stops it afterwards:
#
#   scripts/test-postgres.sh go test ./...
#
# The cluster lives in a new temporary directory, owned by an unprivileged user (the invoking
# user, or "postgres"/"nobody" when run as root, since PostgreSQL refuses to run as root), and
# listens on a free loopback port only. The command finds it through FLASHER_TEST_POSTGRES, a DSN
# of a superuser that may create one database per test. The Debian packages are installed only
# when the binaries are missing. The exit status is the command's.
set -euo pipefail

PG_VERSION=15

find_bin() {
	for d in "/usr/lib/postgresql/$PG_VERSION/bin" /usr/lib/postgresql/*/bin; do
		if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

if ! bindir=$(find_bin); then
	echo "test-postgres: PostgreSQL binaries missing; installing the Debian package postgresql" >&2
	if [ "$(id -u)" -ne 0 ]; then
		sudo=sudo
	else
		sudo=
	fi
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
	bindir=$(find_bin) || { echo "test-postgres: initdb still missing after installing postgresql" >&2; exit 1; }
fi

# The server must not run as root: use the account the package created, else nobody.
runas=()
owner=$(id -un)
if [ "$(id -u)" -eq 0 ]; then
	if id postgres >/dev/null 2>&1; then owner=postgres; else owner=nobody; fi
	runas=(runuser -u "$owner" --)
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/flasher-pg.XXXXXX")
chmod 0755 "$dir"
mkdir "$dir/data" "$dir/sock"
chown -R "$owner" "$dir"

stop() {
	"${runas[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
	rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM # until the command starts

# A free loopback port: ask the kernel for one, then hand it to PostgreSQL (a race with another
# process taking it in between is retried below).
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
		echo $((20000 + RANDOM % 20000))
}

"${runas[@]}" "$bindir/initdb" -D "$dir/data" --no-sync -U flasher -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
	{ cat "$dir/initdb.log" >&2; exit 1; }

started=
for attempt in 1 2 3 4 5; do
	port=$(free_port)
	if "${runas[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
		-o "-c listen_addresses=127.0.0.1 -p $port -k $dir/sock -c max_connections=300 -c shared_buffers=64MB" \
		start >/dev/null 2>&1; then
		started=1
		break
	fi
	echo "test-postgres: start on port $port failed (attempt $attempt)" >&2
done
if [ -z "$started" ]; then
	cat "$dir/server.log" >&2 || true
	exit 1
fi

export FLASHER_TEST_POSTGRES="postgres://flasher@127.0.0.1:$port/postgres?sslmode=disable"
echo "test-postgres: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (FLASHER_TEST_POSTGRES)" >&2
# The command runs in the background so a signal to this script reaches the trap (and the
# cleanup) at once instead of after the command ends; the command gets the signal too.
set +e
"$@" &
child=$!
trap 'kill "$child" 2>/dev/null' INT TERM
wait "$child"
rc=$?
while kill -0 "$child" 2>/dev/null; do
	wait "$child"
	rc=$?
done
set -e
exit $rc
