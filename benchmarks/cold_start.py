"""Cold start: Model(...).deploy() to the first successful prediction, against loading the model in-process.

The endpoint side starts its clock with the control plane already up (Session() created first) and stops
it when the first predict() answers: packing and uploading the artifact, CreateModel/EndpointConfig/
Endpoint, unpacking, starting gunicorn, importing torch and transformers, model_fn, /ping, and one forward
pass. The in-process side is a fresh ``python -c`` that imports sentence-transformers, loads the same model
and encodes one text, timed as a whole subprocess, so that interpreter start and imports count on both
sides: the instance pays them too. The two alternate, and medians are reported.

    python -m benchmarks.cold_start [--repeats 3] [--model minilm]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.reporting import ROLE, load_line, machine_line, markdown_table

TEXT = "Ronaldo plays for Portugal"
IN_PROCESS_SCRIPT = """
import json, sys, time
began = time.perf_counter()
from sentence_transformers import SentenceTransformer
imported = time.perf_counter()
model = SentenceTransformer(sys.argv[1], device="cpu")
loaded = time.perf_counter()
vector = model.encode([sys.argv[2]])
encoded = time.perf_counter()
print(json.dumps({"import_s": imported - began, "load_s": loaded - imported, "encode_s": encoded - loaded,
                  "dimension": int(vector.shape[1])}))
"""
# The endpoint is torn down between repeats; its processes must be gone before the next clock starts.
STOP_TIMEOUT_S = 30.0


@dataclass
class Timings:
    """Seconds per repeat for each named part of one path."""

    parts: dict[str, list[float]] = field(default_factory=dict)

    def add(self, **seconds: float) -> None:
        for name, value in seconds.items():
            self.parts.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        return statistics.median(self.parts[name])


def time_in_process(model_dir: Path, timeout_s: float) -> dict[str, float]:
    """One fresh interpreter that loads the model and encodes one text; its wall time and inner parts."""
    began = time.perf_counter()
    finished = subprocess.run([sys.executable, "-c", IN_PROCESS_SCRIPT, str(model_dir), TEXT], capture_output=True,
                              text=True, timeout=timeout_s)
    total = time.perf_counter() - began
    if finished.returncode != 0:
        raise RuntimeError(f"the in-process run failed:\n{finished.stderr[-2000:]}")
    inner = json.loads(finished.stdout.strip().splitlines()[-1])
    parts = {"import": inner["import_s"], "load": inner["load_s"], "encode": inner["encode_s"]}
    return {"total": total, "interpreter": total - sum(parts.values()), **parts}


def time_deploy(session: Any, model: str) -> dict[str, float]:
    """deploy() until InService, then the first predict(); the endpoint is deleted afterwards, off the clock."""
    from localmaker.deploy import Model
    from localmaker.deserializers import JSONDeserializer
    from localmaker.serializers import JSONSerializer

    name = f"cold-start-{uuid.uuid4().hex[:6]}"
    began = time.perf_counter()
    predictor = Model(model_data=model, role=ROLE, sagemaker_session=session).deploy(
        initial_instance_count=1, instance_type="ml.m5.large", endpoint_name=name,
        serializer=JSONSerializer(), deserializer=JSONDeserializer())
    in_service = time.perf_counter()
    answer = predictor.predict({"inputs": [TEXT]})
    answered = time.perf_counter()
    if len(answer.get("embeddings", [])) != 1:
        raise RuntimeError(f"the first prediction was not one embedding: {str(answer)[:200]}")
    pids = [i.pid for i in session.local_endpoint(name).instances]
    predictor.delete_endpoint()
    predictor.delete_model()
    _wait_until_gone(pids)
    return {"total": answered - began, "deploy": in_service - began, "predict": answered - in_service}


def _wait_until_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def measure(args: argparse.Namespace) -> tuple[Timings, Timings]:
    from localmaker.deploy import Session
    from localmaker.model.sources import resolve_source

    model_dir = resolve_source(args.model)
    endpoint, in_process = Timings(), Timings()
    with tempfile.TemporaryDirectory(prefix="localmaker-cold-start-") as folder, \
            Session(work_root=Path(folder) / "control-plane") as session:
        turns = [lambda: endpoint.add(**time_deploy(session, args.model)),
                 lambda: in_process.add(**time_in_process(model_dir, args.timeout))]
        for repeat in range(args.repeats):
            for turn in turns if repeat % 2 == 0 else reversed(turns):  # alternate who goes first
                turn()
    return endpoint, in_process


def report(endpoint: Timings, in_process: Timings, args: argparse.Namespace) -> str:
    x, y = endpoint.median("total"), in_process.median("total")
    rows = [
        ["endpoint: Model(...).deploy() until InService", f"{endpoint.median('deploy'):.2f}"],
        ["endpoint: first predict()", f"{endpoint.median('predict'):.2f}"],
        ["**endpoint: deploy → first prediction**", f"**{x:.2f}**"],
        ["in-process: python start and exit", f"{in_process.median('interpreter'):.2f}"],
        ["in-process: import sentence_transformers", f"{in_process.median('import'):.2f}"],
        ["in-process: SentenceTransformer(dir) load", f"{in_process.median('load'):.2f}"],
        ["in-process: encode one text", f"{in_process.median('encode'):.2f}"],
        ["**in-process: whole subprocess**", f"**{y:.2f}**"],
    ]
    return "\n".join([
        f"\nmodel {args.model!r}, control plane already up, median of {args.repeats} (the two paths alternate):\n",
        markdown_table(["step", "median s"], rows),
        "",
        f"deploy→first prediction / in-process = {x / y:.2f}×",
        f"deploy→first prediction = {x:.2f} s vs in-process {y:.2f} s: X/(2Y+2) = {x / (2 * y + 2):.2f} (target ≤ 1)",
    ])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="minilm", help="a named source or a model directory")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed for one in-process run")
    args = parser.parse_args(argv)

    print(machine_line())
    endpoint, in_process = measure(args)
    print(f"after the run: {load_line()}")
    print(report(endpoint, in_process, args))


if __name__ == "__main__":
    main()
