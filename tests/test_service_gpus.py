"""Scheduling on a multi-GPU host, on the CPU: a local Ray told it has 2 GPUs (fake resources). Each job asks
for one GPU, so at most two run at once, each with its own CUDA_VISIBLE_DEVICES, and the rest queue; a job
whose training asks for two (`train.gpus`) gets both, alone; one asking for three is refused (no host has
three), and one already queued for three says what it waits for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SCRIPT = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from splatforge.service.executor import RayExecutor
    from splatforge.service.store import Store

    work = Path(sys.argv[1]); db = f"sqlite:///{work / 'jobs.sqlite'}"
    store = Store(db)
    executor = RayExecutor(store, db_url=db, jobs_dir=work / "jobs", runner="service_runner:gpu_probe",
                           num_cpus=4, num_gpus=2)
    executor.start()
    from splatforge.errors import InputError
    refusals = {}
    for gpus in ("0,1", "0,1,2"):
        try:
            executor.check_fits({"train.gpus": gpus})
            refusals[gpus] = None
        except InputError as exc:
            refusals[gpus] = [exc.message, exc.advice]
    big = "jobbig" + "x" * 16  # queued before the check (or before the host with 3 GPUs left): Ray can't place it
    (work / "jobs" / big / "upload").mkdir(parents=True)
    store.create(big, {"train.gpus": "0,1,2"}, {"kind": "images", "source": "upload"}, owner="test")
    executor.submit(big, 0)
    ids = [f"job{i:02d}" + "x" * 16 for i in range(6)]
    for i, job_id in enumerate(ids):
        (work / "jobs" / job_id / "upload").mkdir(parents=True)
        options = {"train.gpus": "0,1"} if i == 5 else {}  # the last one trains on two GPUs
        store.create(job_id, options, {"kind": "images", "source": "upload"}, owner="test")
        executor.submit(job_id, 0)
    deadline = time.time() + 240
    while time.time() < deadline and any(store.get(j).state != "succeeded" for j in ids):
        time.sleep(0.2)
    while time.time() < deadline and not store.get(big).message.startswith("waiting"):
        time.sleep(0.2)
    waiting = {"state": store.get(big).state, "message": store.get(big).message}
    executor.kill(big)
    print(json.dumps({"use_gpu": executor.use_gpu, "states": [store.get(j).state for j in ids],
                      "refusals": refusals, "waiting": waiting,
                      "workers": [store.get(j).worker for j in ids],
                      "probes": [json.loads((work / "jobs" / j / "run" / "gpu_probe.json").read_text())
                                 for j in ids if (work / "jobs" / j / "run" / "gpu_probe.json").exists()]}))
    executor.stop()
""")


@pytest.mark.slow
def test_each_job_gets_its_own_gpu_and_the_rest_queue(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent / "src"),
                                                       os.environ.get("PYTHONPATH", "")]),
           "SPLATFORGE_PROBE_S": "2.0", "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=400, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    assert doc["use_gpu"] is True and doc["states"] == ["succeeded"] * 6
    probes = doc["probes"]
    # the job's record names the GPU Ray gave its worker (fake resources: no UUID, just the index)
    assert sorted(w.split(" gpu ")[1] for w in doc["workers"]) == sorted(p["cuda_visible_devices"] for p in probes)
    assert sorted(p["cuda_visible_devices"] for p in probes[:5]) in (["0", "0", "0", "1", "1"], ["0", "0", "1", "1", "1"])
    assert sorted(probes[5]["cuda_visible_devices"].split(",")) == ["0", "1"]
    # never two jobs on one GPU at once, never more than two GPUs busy at once
    events = sorted([(p["start"], 1, gpu) for p in probes for gpu in p["cuda_visible_devices"].split(",")]
                    + [(p["end"], -1, gpu) for p in probes for gpu in p["cuda_visible_devices"].split(",")])
    running: dict[str, int] = {}
    for _, delta, gpu in events:
        running[gpu] = running.get(gpu, 0) + delta
        assert running[gpu] <= 1, "two jobs shared a GPU"
        assert sum(running.values()) <= 2
    # the third job waited for a free GPU: it started only when one of the first two had finished
    first_end = min(p["end"] for p in probes)
    assert sorted(p["start"] for p in probes)[2] >= first_end - 0.05
    # two GPUs fit the host; three are refused up front, with what to do instead
    assert doc["refusals"]["0,1"] is None
    error, advice = doc["refusals"]["0,1,2"]
    assert error == "this job asks for 3 GPUs on one host; the largest host in the cluster has 2"
    assert 'at most 2 (train.gpus "0,1")' in advice and "add a host with 3 GPUs" in advice
    # a job queued for three waits, and its message says for what (no silent hang)
    assert doc["waiting"]["state"] == "queued"
    assert doc["waiting"]["message"].startswith("waiting for a host with 3 GPUs: the largest host has 2 now")


def test_a_job_asks_for_as_many_gpus_as_its_training_names():
    from splatforge.errors import InputError
    from splatforge.service.executor import job_gpu_count, job_gpu_request

    assert job_gpu_count({}) == 1 and job_gpu_count({"train.gpus": "0,1"}) == 2
    assert job_gpu_count({"train": {"gpus": "0,1,2,3"}}) == 4
    with pytest.raises(InputError, match="all GPUs"):
        job_gpu_count({"train.gpus": "all"})
    # which jobs need GPUs even on a cluster without any (the rest train on the CPU there)
    assert job_gpu_request({}) == (1, False) and job_gpu_request({"train.device": "cpu"}) == (1, False)
    assert job_gpu_request({"train.device": "cuda"}) == (1, True)
    assert job_gpu_request({"train.gpus": "0,1"}) == (2, True)
    assert job_gpu_request({"train.gpus": "cpu,cpu"}) == (0, False)


def test_gpus_are_compared_with_the_largest_live_host_not_the_cluster_total():
    from splatforge.service.executor import gpu_shortfall, largest_gpu_host

    nodes = [{"Alive": True, "Resources": {"CPU": 8.0}},  # a head without GPUs
             {"Alive": True, "Resources": {"CPU": 16.0, "GPU": 2.0}},
             {"Alive": True, "Resources": {"CPU": 16.0, "GPU": 2.0}},
             {"Alive": False, "Resources": {"CPU": 32.0, "GPU": 8.0}}]  # gone
    assert largest_gpu_host(nodes) == 2 and largest_gpu_host(nodes[:1]) == 0 and largest_gpu_host([]) == 0
    assert gpu_shortfall(2, 2) is None and gpu_shortfall(0, 0) is None
    assert gpu_shortfall(4, 2) == ("this job asks for 4 GPUs on one host; the largest host in the cluster has 2",
                                   'ask for at most 2 (train.gpus "0,1"), or add a host with 4 GPUs to the cluster')
    error, advice = gpu_shortfall(1, 0)
    assert error == "this job asks for 1 GPU on one host; the cluster has no GPU"
    assert "train on the CPU" in advice and "add a host with 1 GPU" in advice
