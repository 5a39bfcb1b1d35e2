"""Triton serving throughput and latency through the real server (``s2s serve``'s tritonserver).

    python benchmarks/serving.py BUNDLE [--requests 320] [--threads 1] [--instances 1]
                                        [--json benchmarks/results/DATE-serving.json] [--preliminary]

For dynamic batching on and off, a fresh ``tritonserver`` (nvidia-pytriton's, Python backend,
``--instances`` model instances with ``--threads`` intra-op threads each) serves BUNDLE on
loopback ports; for concurrency 1 and 16 a fresh client process runs that many threads, each with
its own KServe v2 HTTP client, sending single-sentence greedy requests (random sources of 3 to 12
source tokens) until ``--requests`` requests are answered, after a warm-up of 16 requests. It
reports requests/s and p50/p99 latency (ms, per request, client side) per configuration, as a
markdown table, and writes the JSON with the date, CPU model, core count, load average at start
and versions. ``--preliminary`` marks the figures as taken on a shared (noisy) machine.
Needs the ``serve`` extra; torch-free.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from s2s_export.serving.repository import ServingConfig, write_repository  # noqa: E402
from s2s_export.serving.server import TritonServer  # noqa: E402

CONCURRENCY = (1, 16)
WARMUP = 16

CLIENT = r"""
import json, sys, threading, time
import numpy as np
import tritonclient.http as http
url, concurrency, total, texts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
def request(client, text):
    data = np.array([[text.encode()]], dtype=object)
    tensor = http.InferInput("text", [1, 1], "BYTES")
    tensor.set_data_from_numpy(data)
    client.infer("s2s", [tensor])
with http.InferenceServerClient(url) as c:
    for i in range(WARMUP):
        request(c, texts[i % len(texts)])
latencies, lock, counter = [], threading.Lock(), iter(range(total))
def worker():
    with http.InferenceServerClient(url) as c:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            request(c, texts[i % len(texts)])
            with lock:
                latencies.append(time.perf_counter() - t0)
threads = [threading.Thread(target=worker) for _ in range(concurrency)]
start = time.perf_counter()
for t in threads:
    t.start()
for t in threads:
    t.join()
wall = time.perf_counter() - start
ms = np.array(latencies) * 1e3
print(json.dumps({"requests": len(ms), "seconds": wall, "requests_per_s": len(ms) / wall,
                  "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}))
""".replace("WARMUP", str(WARMUP))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def sources(bundle: Path, n: int = 256) -> list[str]:
    """Random source texts of 3 to 12 tokens from the bundle's source vocabulary (specials excluded)."""
    import numpy as np

    from s2s_export.bundle import load_manifest
    from s2s_export.vocab import detokenize, tokenizer_kinds

    manifest = load_manifest(bundle, verify=False)
    kind = tokenizer_kinds(manifest.tokenizer)[0]
    tokens = [t for t in manifest.src_vocab if not (t.startswith("<") and t.endswith(">")) and t.strip()]
    rng = np.random.default_rng(0)
    return [detokenize(list(rng.choice(tokens, size=int(rng.integers(3, 13)))), kind) for _ in range(n)]


def measure(bundle: Path, dynamic: bool, args: argparse.Namespace, texts: list[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="s2s-bench-serving-") as tmp:
        cfg = ServingConfig(max_batch=64, instances=args.instances, backend="onnxruntime", dynamic_batching=dynamic,
                            intra_op_threads=args.threads, spinning="off")
        write_repository(bundle, Path(tmp) / "repo", cfg)
        http, grpc, metrics = free_ports(3)
        with TritonServer(Path(tmp) / "repo", http, grpc, metrics) as server:
            server.wait_ready(180)
            for concurrency in CONCURRENCY:
                env = {**os.environ, "OMP_NUM_THREADS": "1"}
                proc = subprocess.run([sys.executable, "-c", CLIENT, f"127.0.0.1:{http}", str(concurrency),
                                       str(args.requests), json.dumps(texts)], capture_output=True, text=True,
                                      env=env, check=True, timeout=900)
                out[f"concurrency {concurrency}"] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--requests", type=int, default=320)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads per model instance")
    ap.add_argument("--instances", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--preliminary", action="store_true", help="taken on a shared, noisy machine")
    args = ap.parse_args()
    now = datetime.datetime.now(datetime.timezone.utc)
    record: dict[str, object] = {
        "bundle": str(args.bundle), "date": now.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu": cpu_model(),
        "cpus": os.cpu_count(), "load_average_at_start": list(os.getloadavg()),
        "versions": {p: version(p) for p in ("nvidia-pytriton", "tritonclient", "onnxruntime", "numpy")},
        "setup": {"requests": args.requests, "warmup": WARMUP, "texts_per_request": 1, "search": "greedy",
                  "instances": args.instances, "intra_op_threads": args.threads, "spinning": "off",
                  "max_batch": 64, "max_queue_delay_us": 1000, "protocol": "KServe v2 HTTP (tritonclient)"},
        "preliminary": args.preliminary,
    }
    if args.preliminary:
        record["note"] = ("preliminary: taken on a 2-core machine shared with other busy jobs (see the load "
                          "average at start); the figures are noisy, re-run on a quiet machine")
    texts = sources(args.bundle)
    results = {("dynamic batching" if dynamic else "no dynamic batching"): measure(args.bundle, dynamic, args, texts)
               for dynamic in (False, True)}
    record["results"] = results
    print("| configuration | concurrency | requests/s | p50 ms | p99 ms |\n|---|---|---|---|---|")
    for name, by_c in results.items():
        for c, r in by_c.items():
            print(f"| {name} | {c.split()[-1]} | {r['requests_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
    path = args.json or ROOT / "benchmarks" / "results" / f"{now:%Y-%m-%d}-serving.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
