#!/usr/bin/env bash
# Run where pip can reach PyPI. Fetches the job service's packages that the lent GPU hosts lack (Ray, the
# web stack, the job store) as CPython 3.12 manylinux wheels, unpacks them into one tree and packs it as
# .whl/service.tar.xz; benchmarks/gpu_service_env.sh unpacks it on the host (no index there).
#   bash benchmarks/fetch_service_wheels.sh [OUT_TARBALL]
# Pinned to the versions the tests run with. No dependency resolution (--no-deps): the list is the
# Requires-Dist closure minus what the hosts have (numpy, click, filelock, msgpack, packaging, protobuf,
# pyyaml, requests, attrs, h11, anyio, idna, annotated-doc, psutil, aiohttp, grpcio, httpx). Ray without
# the [default] extra: `ray start --include-dashboard=false` and tasks need none of it.
set -euo pipefail
OUT=${1:-.whl/service.tar.xz}
PY=${PY:-python3}
PACKAGES=(
  ray==2.60.0
  jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1  # ray
  fastapi==0.165.0 starlette==1.10.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
  typing-inspection==0.4.5 opentelemetry-api==1.45.2  # fastapi imports opentelemetry (its telemetry module)
  typing-extensions==4.16.0  # pydantic needs >= 4.16; the hosts' may be older (shadowed: /tmp/site comes first)
  uvicorn==0.54.0 python-multipart==0.0.34
  sqlalchemy==2.1.9  # greenlet only for its asyncio extra
  simplejpeg==1.9.0  # strict JPEG check of uploads
)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/wheels" "$work/site"
for spec in "${PACKAGES[@]}"; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 \
    -d "$work/wheels" "$spec"
done
for whl in "$work"/wheels/*.whl; do
  echo "$(basename "$whl")  $(du -k "$whl" | cut -f1) KiB"
  (cd "$work/site" && unzip -q -o "$whl")
done
# Parts of Ray a single-host job service never loads (libraries on top of Ray Core, the dashboard's web
# client, tests); each was checked against `serve` + a real job by benchmarks/service_gpus.py --cpu-dry-run.
( cd "$work/site/ray" && rm -rf rllib tune train serve data workflow util/dask util/spark \
    dashboard/client/build tests cpp jars llm )
find "$work/site" -name '__pycache__' -type d -prune -exec rm -rf {} +
mkdir -p "$(dirname "$OUT")"
tar -C "$work/site" -cf - . | xz -9e -T0 > "$OUT"
echo "$OUT: $(du -k "$OUT" | cut -f1) KiB, unpacked $(du -sk "$work/site" | cut -f1) KiB"
ls "$work/site"
