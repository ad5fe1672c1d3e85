# Source on a bare GPU host for the job service: what benchmarks/gpu_env.sh sets up (gsplat, plyfile, the
# compiled CUDA build; it also unpacks every .whl/*.tar.xz into /tmp/site) plus a check that the service's
# packages (Ray, FastAPI, SQLAlchemy, uvicorn, ...; .whl/service.tar.xz from
# benchmarks/fetch_service_wheels.sh) are importable.
#   . benchmarks/gpu_service_env.sh
# Where the tarball (25 MiB) and gsplat + a capture do not fit one call's carry together, the first call
# carries only .whl/service.tar.xz and runs with SERVICE_ONLY=1 (unpack into /tmp/site, nothing else); the
# next call on the still-warm machine carries the rest and finds the service's packages in /tmp/site.
if [ "${SERVICE_ONLY:-0}" = 1 ]; then
  mkdir -p /tmp/site && tar -xJf .whl/service.tar.xz -C /tmp/site
  export PYTHONPATH=/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}
else
  . benchmarks/gpu_env.sh
fi
python3 -c "import ray, fastapi, sqlalchemy, uvicorn, multipart, simplejpeg; print('service packages: ray', ray.__version__, 'from', ray.__file__)" \
  || echo "!! the service's packages are not in /tmp/site: carry .whl/service.tar.xz (SERVICE_ONLY=1) first"
