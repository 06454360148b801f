#!/usr/bin/env bash
# openapi_sdk.sh
# Reference requests from the official Alibaba Cloud Python SDK for the exporter's ACS3 signer tests.
# Creates once (serialized with flock, cached) a venv with the pinned SDK at
#   ${RMQ_RIG_CACHE:-$HOME/.cache/rmq-rig}/openapi-sdk-venv   (marker .complete holds the pin list)
# and runs openapi_sdk_vectors.py in it: one JSON line per captured SDK request on stdout, nothing
# else; pip/progress output goes to stderr. Exit status non-zero if any request fails to verify.
# Needs python3 with venv and network access to PyPI on the first run only.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${RMQ_RIG_CACHE:-$HOME/.cache/rmq-rig}"
VENV="$CACHE/openapi-sdk-venv"
# Top-level pins plus everything they pulled in (resolved 2026-12 on Python 3.11).
PINS=(
  alibabacloud-rocketmq20220801==5.1.0 alibabacloud-tea-openapi==0.4.6
  alibabacloud-credentials==1.0.12 alibabacloud-credentials-api==1.0.1 alibabacloud-gateway-spi==0.0.4
  alibabacloud-tea==0.4.3 alibabacloud-tea-util==0.3.15 darabonba-core==1.0.9
  aiofiles==24.1.0 aiohappyeyeballs==2.7.1 aiohttp==3.14.5 aiosignal==1.4.0 APScheduler==3.11.3
  attrs==26.1.0 certifi==2026.10.19.post1 cffi==2.1.1 charset-normalizer==3.5.3 cryptography==50.0.2
  frozenlist==1.8.0 idna==3.20 multidict==7.2.1 propcache==0.5.4 pycparser==3.12 requests==2.34.2
  typing_extensions==4.16.0 tzlocal==5.4.5 urllib3==2.8.0 websocket-client==1.9.2 yarl==1.25.1
)

mkdir -p "$CACHE"
if [[ "$(cat "$VENV/.complete" 2>/dev/null)" != "${PINS[*]}" ]]; then
  exec 9>"$CACHE/.openapi-sdk-venv.lock"
  flock 9
  if [[ "$(cat "$VENV/.complete" 2>/dev/null)" != "${PINS[*]}" ]]; then
    echo "openapi_sdk.sh: creating $VENV" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV" >&2
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PINS[@]}" >&2
    echo "${PINS[*]}" > "$VENV/.complete"
  fi
  exec 9>&-
fi

exec "$VENV/bin/python" "$HERE/openapi_sdk_vectors.py"
