#!/usr/bin/env bash
# The wheels that the GPU machines' image lacks for `bench/gpu_study.py` (it reaches no
# package index). Run it here, in the repository root, with han-search's environment active:
#   bash bench/gpu_wheels.sh [PYTHON_VERSION]      (default 3.12, the GPU image's Python)
# Each package comes at the version installed here, the one the tests ran with, into .whl/
# (or $WHEEL_DIR), which `.git/info/exclude` should ignore; name it in the device call's
# carry. There: pip install --no-index --no-deps --target /tmp/site .whl/*.whl
set -euo pipefail
cd "$(dirname "$0")/.."
python_version=${1:-3.12}
wheel_dir=${WHEEL_DIR:-.whl}
# han-search's dependency closure less what the image has (numpy, pandas, scikit-learn,
# matplotlib, pyarrow, protobuf, requests, jinja2, werkzeug...). typer and click come too:
# the image has them at versions nobody checked against the CLI.
packages=(
  optuna colorlog alembic sqlalchemy greenlet mako
  mlflow mlflow-skinny mlflow-tracing databricks-sdk google-auth pyasn1 pyasn1-modules
  cachetools cryptography cffi pycparser docker fastapi starlette uvicorn flask flask-cors
  blinker itsdangerous gitpython gitdb smmap graphene graphql-core graphql-relay gunicorn
  huey importlib-metadata opentelemetry-api opentelemetry-proto opentelemetry-sdk
  opentelemetry-semantic-conventions prettytable wcwidth pydantic pydantic-core
  annotated-types typing-inspection python-dotenv skops sqlparse typer click
)
pins=$(python3 - "${packages[@]}" <<'PY'
import importlib.metadata as metadata, sys
print(" ".join(f"{name}=={metadata.version(name)}" for name in sys.argv[1:]))
PY
)
mkdir -p "$wheel_dir"
platforms=()
for tag in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${tag}_x86_64")
done
# shellcheck disable=SC2086  # one argument per pin
python3 -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
  --python-version "$python_version" "${platforms[@]}" -d "$wheel_dir" $pins 2>&1 \
  | grep -v "^WARNING: Location" || true
count=$(ls "$wheel_dir"/*.whl | wc -l)
echo "$count wheels, $(du -sh "$wheel_dir" | cut -f1), in $wheel_dir for Python $python_version" >&2
[ "$count" -ge "${#packages[@]}" ] || { echo "expected ${#packages[@]} wheels" >&2; exit 1; }
