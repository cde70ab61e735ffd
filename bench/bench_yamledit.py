"""Edit throughput and diff size: yamledit splicing vs a naive ruamel.yaml round trip.

Why it exists: the splicing editor was chosen over a ruamel round trip both for diff
noise and for speed; this keeps both claims measurable. Runs in a few seconds:

    .venv/bin/python bench/bench_yamledit.py [ROUNDS]
"""

from __future__ import annotations

import difflib
import io
import pathlib
import sys
import time
from typing import Any

from ruamel.yaml import YAML

from reconciler.yamledit import workload

DEMO = pathlib.Path("/work/shared/data/microservices-demo/kubernetes-manifests/cartservice.yaml")
CHANGE = workload.WorkloadChange(
    "Deployment",
    "redis-cart",
    None,
    (workload.ContainerChange("redis", {"cpu": "90m", "memory": "256Mi"}, {"memory": "512Mi"}),),
    replicas=2,
)


def _ruamel_edit(text: str) -> str:
    yaml = YAML()  # round-trip mode
    docs: list[Any] = list(yaml.load_all(text))
    for doc in docs:
        if doc and doc.get("kind") == "Deployment" and doc["metadata"]["name"] == "redis-cart":
            doc["spec"]["replicas"] = 2
            container = doc["spec"]["template"]["spec"]["containers"][0]
            container["resources"]["requests"]["cpu"] = "90m"
            container["resources"]["requests"]["memory"] = "256Mi"
            container["resources"]["limits"]["memory"] = "512Mi"
    out = io.StringIO()
    yaml.dump_all(docs, out)
    return out.getvalue()


def _changed_lines(a: str, b: str) -> int:
    diff = difflib.ndiff(a.splitlines(), b.splitlines())
    return sum(1 for line in diff if line[:2] in ("+ ", "- "))


def _time(fn: Any, text: str, rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        fn(text)
    return (time.perf_counter() - start) / rounds * 1000


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    text = DEMO.read_text(encoding="utf-8")

    def splice(t: str) -> str:
        return workload.edit_workload(t, CHANGE).text

    # 20 renamed copies (100 documents, 40 Deployments), one of them the target.
    copies = [text.replace("redis-cart", f"redis-{i}").replace("cart", f"c{i}") for i in range(19)]
    many = "---\n".join([*copies, text])

    for label, fn in (("yamledit", splice), ("ruamel round trip", _ruamel_edit)):
        ms = _time(fn, text, rounds)
        ms_many = _time(fn, many, max(1, rounds // 10))
        lines = _changed_lines(text, fn(text))
        print(
            f"{label:18s} {ms:7.2f} ms/edit ({len(text)} B)  "
            f"{ms_many:7.2f} ms/edit ({len(many)} B, 100 docs)  diff lines: {lines}"
        )
    start = time.perf_counter()
    for _ in range(rounds):
        workload.scan_workloads(many)
    per_scan = (time.perf_counter() - start) / rounds * 1000
    print(f"scan_workloads     {per_scan:7.2f} ms/scan ({len(many)} B, 100 docs)")


if __name__ == "__main__":
    main()
