# Sourced after scripts/cache.sh: a local S3 server for the integration tests. Installs moto
# (tests/s3/requirements.lock, hash-checked, into a virtualenv keyed by the lock) and exports
# OFFSTAGE_TEST_MOTO, the server executable `tests/it/images/s3_store.rs` starts on a free port.
#
#   source scripts/cache.sh; source scripts/s3-test-env.sh; s3_test_env

s3_test_env() {
  local venv
  venv=$(python_env tests/s3/requirements.lock)
  export OFFSTAGE_TEST_MOTO="$venv/bin/moto_server"
}
