# Sourced by scripts/test: a PostgreSQL server for the store and multi-instance tests, found or
# started, exported as OFFSTAGE_TEST_PG (a URL of its `postgres` database). Each test makes a
# fresh database of its own and drops it.
#
#   1. OFFSTAGE_TEST_PG when set;
#   2. the machine's server on 127.0.0.1:5432 when it answers (trust auth, user postgres);
#   3. else a private server started with initdb/pg_ctl in a temporary directory, stopped when
#      the calling script exits;
#   4. else a clear failure saying what to install.

# Where initdb and pg_ctl are: on PATH, or Debian's versioned directory.
postgres_bin() {
  local dir
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v pg_ctl)"
    return
  fi
  for dir in /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      echo "$dir"
      return
    fi
  done
  return 1
}

# Whether a PostgreSQL answers at this URL.
postgres_answers() {
  if command -v pg_isready >/dev/null; then
    pg_isready -q -d "$1" -t 3
  else
    (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null
  fi
}

postgres_test_env() {
  if [ -n "${OFFSTAGE_TEST_PG:-}" ]; then
    return
  fi
  local machine=postgres://postgres@127.0.0.1:5432/postgres
  if postgres_answers "$machine"; then
    export OFFSTAGE_TEST_PG=$machine
    return
  fi
  local bin
  if ! bin=$(postgres_bin); then
    echo "scripts/test needs PostgreSQL: none answers on 127.0.0.1:5432 and initdb/pg_ctl are" \
      "not installed. Install the postgresql package, run a server on 127.0.0.1:5432 with trust" \
      "auth for user postgres, or set OFFSTAGE_TEST_PG to a server's URL." >&2
    exit 1
  fi
  local dir port run=()
  dir=$(mktemp -d)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # initdb refuses to run as root; the server then belongs to the postgres user.
  if [ "$(id -u)" = 0 ]; then
    if ! id postgres >/dev/null 2>&1; then
      echo "scripts/test runs as root and there is no postgres user to own a private server" >&2
      exit 1
    fi
    chown postgres "$dir"
    run=(runuser -u postgres --)
  fi
  "${run[@]}" "$bin/initdb" --pgdata="$dir/data" --username=postgres --auth=trust >/dev/null
  "${run[@]}" "$bin/pg_ctl" --pgdata="$dir/data" --log="$dir/log" --wait \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null
  POSTGRES_PRIVATE=("${run[@]}" "$bin/pg_ctl" --pgdata="$dir/data" --mode=immediate stop)
  trap '"${POSTGRES_PRIVATE[@]}" >/dev/null 2>&1; rm -rf "'"$dir"'"' EXIT
  export OFFSTAGE_TEST_PG=postgres://postgres@127.0.0.1:$port/postgres
  echo "scripts/test: started a private PostgreSQL on port $port" >&2
}
