#!/usr/bin/env bash
# Make the PostgreSQL and MariaDB servers the backend tests use ready, and give each a fresh,
# empty `deliverability_test` database.
#
# - Starts a server that is down (when this machine has it installed), then waits a bounded
#   time (SERVICES_WAIT seconds, default 60) until it accepts connections.
# - Drops and re-creates the test database, so every CI run starts from nothing. Running it
#   twice is harmless.
# - A machine without the servers is fine: the backend tests then skip with a reason. Only
#   when DELIVERABILITY_REQUIRE_BACKENDS names a backend ("postgresql", "mariadb", comma
#   separated) does a backend that cannot be made ready fail this script.
set -uo pipefail

WAIT="${SERVICES_WAIT:-60}"
DB="deliverability_test"
PG_HOST="${PGHOST:-127.0.0.1}"
PG_PORT="${PGPORT:-5432}"
PG_USER="${PGUSER:-postgres}"
MY_HOST="${MYSQL_HOST:-127.0.0.1}"
MY_PORT="${MYSQL_PORT:-3306}"
MY_USER="${MYSQL_USER:-root}"
REQUIRED=",${DELIVERABILITY_REQUIRE_BACKENDS:-},"
failed=0

say() { echo "services: $*"; }

required() { [[ "$REQUIRED" == *",$1,"* ]]; }

give_up() {
    # $1 backend, $2 reason
    if required "$1"; then
        say "$1: $2 (required by DELIVERABILITY_REQUIRE_BACKENDS)" >&2
        failed=1
    else
        say "$1: $2; its tests will be skipped"
    fi
}

owner_alive() {
    # A test run's database is named after its process id: leave it while that process lives.
    local pid="${1##*_p}"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

wait_until() {
    # Run "$@" once a second until it succeeds or WAIT seconds have passed.
    local waited=0
    until "$@" >/dev/null 2>&1; do
        if [ "$waited" -ge "$WAIT" ]; then return 1; fi
        sleep 1
        waited=$((waited + 1))
    done
}

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }
pg_sql() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres -c "$1"; }

postgresql() {
    if ! command -v psql >/dev/null 2>&1 || ! command -v pg_isready >/dev/null 2>&1; then
        give_up postgresql "psql/pg_isready not installed"
        return
    fi
    if pg_ready; then
        say "postgresql: already accepting connections on $PG_HOST:$PG_PORT"
    else
        if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
            for version in /etc/postgresql/*/; do
                version="$(basename "$version")"
                say "postgresql: starting cluster $version/main"
                pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>&1 | sed 's/^/  /'
            done
        fi
        if ! wait_until pg_ready; then
            give_up postgresql "not accepting connections on $PG_HOST:$PG_PORT after ${WAIT}s"
            return
        fi
        say "postgresql: accepting connections on $PG_HOST:$PG_PORT"
    fi
    # Per-process databases a killed test run left behind (tests/backends.py makes ${DB}_p<pid>).
    for stale in $(PGOPTIONS="-c client_min_messages=warning" psql -X -A -t -h "$PG_HOST" \
            -p "$PG_PORT" -U "$PG_USER" -d postgres \
            -c "SELECT datname FROM pg_database WHERE datname LIKE '${DB}\_p%'"); do
        owner_alive "$stale" && continue
        pg_sql "DROP DATABASE IF EXISTS \"$stale\" WITH (FORCE)" && say "postgresql: dropped $stale"
    done
    # WITH (FORCE) ends sessions a killed earlier run may have left on the old database.
    if pg_sql "DROP DATABASE IF EXISTS $DB WITH (FORCE)" && pg_sql "CREATE DATABASE $DB"; then
        say "postgresql: created a fresh database $DB"
    else
        give_up postgresql "could not re-create database $DB"
    fi
}

my_ready() { mysqladmin --protocol=tcp -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" ping; }
my_sql() { mysql --protocol=tcp -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" -e "$1"; }

mariadb() {
    if ! command -v mysql >/dev/null 2>&1 || ! command -v mysqladmin >/dev/null 2>&1; then
        give_up mariadb "mysql/mysqladmin clients not installed"
        return
    fi
    if my_ready >/dev/null 2>&1; then
        say "mariadb: already accepting connections on $MY_HOST:$MY_PORT"
    else
        if [ -x /usr/sbin/mariadbd ] && command -v start-stop-daemon >/dev/null 2>&1; then
            say "mariadb: starting /usr/sbin/mariadbd"
            start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd 2>&1 \
                | sed 's/^/  /'
        fi
        if ! wait_until my_ready; then
            give_up mariadb "not accepting connections on $MY_HOST:$MY_PORT after ${WAIT}s"
            return
        fi
        say "mariadb: accepting connections on $MY_HOST:$MY_PORT"
    fi
    for stale in $(mysql --protocol=tcp -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" -N -B \
            -e "SHOW DATABASES LIKE '${DB}\_p%'"); do
        owner_alive "$stale" && continue
        my_sql "DROP DATABASE IF EXISTS \`$stale\`" && say "mariadb: dropped $stale"
    done
    if my_sql "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB CHARACTER SET utf8mb4"; then
        say "mariadb: created a fresh database $DB"
    else
        give_up mariadb "could not re-create database $DB"
    fi
}

postgresql
mariadb
exit "$failed"
