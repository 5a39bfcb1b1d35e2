"""Soak test: translate a large generated corpus through the CLI in one process and check that
memory stays flat and that every input line gets exactly one output line.

    python benchmarks/soak.py BUNDLE [--lines 100000] [--beam 1] [--json]

The corpus (``--lines`` lines, default 100k) is drawn from the bundle's source vocabulary
(seeded; lengths 0..``--max-len``, empty lines included) and written to a temporary
directory. One ``s2s translate BUNDLE -i CORPUS`` process translates it to a file while this
script samples the process's resident memory (``VmRSS`` of ``/proc/<pid>/status``, Linux; no
psutil needed) every ``--interval`` seconds, together with the number of output lines written.

Verdict, over the samples taken after warm-up (the first output lines are out and the first
``--warmup`` fraction of the corpus is done): the largest RSS of the last quarter must stay
within ``--tolerance`` (10%) plus ``--slack-mb`` (16 MB) of the largest RSS of the first
quarter; the process must exit 0 and write exactly one line per input line. Exit status 0 when
both hold, 1 when not (2: too few samples to judge memory, e.g. a tiny corpus on a fast machine).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")


@dataclass
class Sample:
    t: float  # seconds since start
    rss_kb: int
    lines_out: int


@dataclass
class Report:
    lines_in: int
    lines_out: int
    returncode: int
    seconds: float
    samples: int
    judged_samples: int
    rss_first_quarter_mb: float
    rss_last_quarter_mb: float
    rss_peak_mb: float
    limit_mb: float
    memory: str  # "flat", "grew" or "inconclusive"
    lines_ok: bool
    passed: bool
    stderr_tail: str = ""
    series: list[tuple[float, float, int]] = field(default_factory=list)  # (s, MB, lines out)


def read_rss_kb(pid: int) -> int | None:
    """VmRSS of ``pid`` in kB, or None once the process is gone (zombies have no VmRSS)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def make_corpus(bundle: Path, path: Path, lines: int, max_len: int, seed: int) -> int:
    """Write ``lines`` random inputs from the bundle's source vocabulary; returns the count."""
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    tokens = [t for t in manifest["src_vocab"] if t not in SPECIAL_TOKENS]
    word = str(manifest.get("tokenizer", "char")).partition(":")[0] == "word"
    limit = min(max_len, int(manifest["max_src_len"]) - 1)  # EOS takes one source position
    rng = random.Random(seed)
    sep = " " if word else ""
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(lines):
            n = rng.randint(0, max(limit, 0))
            f.write(sep.join(rng.choice(tokens) for _ in range(n)) + "\n")
    return lines


class LineCounter:
    """Counts the lines of a file that another process is appending to (reads only new bytes)."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.count = path, 0, 0

    def update(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return self.count
        self.offset += len(chunk)
        self.count += chunk.count(b"\n")
        return self.count


def judge(samples: list[Sample], lines_in: int, warmup: float, tolerance: float, slack_mb: float
          ) -> tuple[str, int, float, float, float]:
    """-> (verdict, judged samples, first-quarter max MB, last-quarter max MB, limit MB)."""
    start = max(1, math.ceil(warmup * lines_in))
    judged = [s for s in samples if s.lines_out >= start and s.lines_out < lines_in]
    if len(judged) < 8:
        return "inconclusive", len(judged), 0.0, 0.0, 0.0
    q = len(judged) // 4
    first = max(s.rss_kb for s in judged[:q]) / 1024
    last = max(s.rss_kb for s in judged[-q:]) / 1024
    limit = first * (1 + tolerance) + slack_mb
    return ("flat" if last <= limit else "grew"), len(judged), first, last, limit


def soak(bundle: Path, lines: int = 100_000, max_len: int = 20, seed: int = 0, beam: int = 1,
         batch_size: int = 64, threads: int = 1, interval: float = 0.2, warmup: float = 0.1,
         tolerance: float = 0.10, slack_mb: float = 16.0, workdir: Path | None = None,
         extra: list[str] | None = None) -> Report:
    """Generate the corpus, run ``s2s translate`` on it while sampling its RSS, and judge."""
    bundle = Path(bundle)
    with tempfile.TemporaryDirectory(prefix="s2s-soak-", dir=workdir) as tmp:
        corpus, output, errors = Path(tmp) / "corpus.txt", Path(tmp) / "out.txt", Path(tmp) / "err.txt"
        make_corpus(bundle, corpus, lines, max_len, seed)
        cmd = [sys.executable, "-m", "s2s_export.cli.main", "translate", str(bundle), "-i", str(corpus),
               "--beam", str(beam), "--n-best", "1", "--batch-size", str(batch_size),
               "--threads", str(threads), *(extra or [])]
        counter = LineCounter(output)
        samples: list[Sample] = []
        t0 = time.monotonic()
        with open(output, "wb") as out, open(errors, "wb") as err:
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
            try:
                while proc.poll() is None:
                    rss = read_rss_kb(proc.pid)
                    if rss is not None:
                        samples.append(Sample(time.monotonic() - t0, rss, counter.update()))
                    time.sleep(interval)
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        seconds = time.monotonic() - t0
        lines_out = counter.update()
        stderr_tail = errors.read_text(encoding="utf-8", errors="replace")[-2000:]
    verdict, judged, first, last, limit = judge(samples, lines, warmup, tolerance, slack_mb)
    lines_ok = proc.returncode == 0 and lines_out == lines
    return Report(lines_in=lines, lines_out=lines_out, returncode=proc.returncode, seconds=round(seconds, 2),
                  samples=len(samples), judged_samples=judged, rss_first_quarter_mb=round(first, 1),
                  rss_last_quarter_mb=round(last, 1), rss_peak_mb=round(max((s.rss_kb for s in samples),
                                                                             default=0) / 1024, 1),
                  limit_mb=round(limit, 1), memory=verdict, lines_ok=lines_ok,
                  passed=lines_ok and verdict == "flat", stderr_tail="" if lines_ok else stderr_tail,
                  series=[(round(s.t, 2), round(s.rss_kb / 1024, 1), s.lines_out) for s in samples])


def verdict(r: Report) -> str:
    if r.passed:
        return "PASSED"
    if r.lines_ok and r.memory == "inconclusive":
        return "INCONCLUSIVE: too few RSS samples after warm-up (use more --lines or a smaller --interval)"
    return "FAILED"


def summary(r: Report) -> list[str]:
    rate = r.lines_in / r.seconds if r.seconds else 0.0
    lines = [f"soak: {r.lines_in} lines in {r.seconds:.1f} s ({rate:.0f} lines/s), exit {r.returncode}",
             f"  output lines: {r.lines_out} / {r.lines_in} ({'ok' if r.lines_ok else 'MISMATCH'})",
             f"  RSS ({r.samples} samples, {r.judged_samples} after warm-up): peak {r.rss_peak_mb:.1f} MB, "
             f"first quarter max {r.rss_first_quarter_mb:.1f} MB, last quarter max "
             f"{r.rss_last_quarter_mb:.1f} MB, limit {r.limit_mb:.1f} MB -> {r.memory}",
             f"  {verdict(r)}"]
    if r.stderr_tail:
        lines.append("  stderr: " + r.stderr_tail.strip().splitlines()[-1])
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path, help="bundle directory written by s2s-export")
    ap.add_argument("--lines", type=int, default=100_000, help="corpus size (default 100000)")
    ap.add_argument("--max-len", type=int, default=20, help="longest input, in source tokens")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--beam", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads of the translate process")
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between RSS samples")
    ap.add_argument("--warmup", type=float, default=0.1, help="fraction of the corpus before judging memory")
    ap.add_argument("--tolerance", type=float, default=0.10, help="allowed relative RSS growth")
    ap.add_argument("--slack-mb", type=float, default=16.0, help="allowed absolute RSS growth, MB")
    ap.add_argument("--json", action="store_true", help="print the report (with the RSS series) as JSON")
    args = ap.parse_args(argv)
    if not Path("/proc/self/status").exists():
        print("soak: needs /proc (Linux) to read the process RSS", file=sys.stderr)
        return 2
    if not (args.bundle / "manifest.json").is_file():
        print(f"soak: {args.bundle} is not a bundle (no manifest.json)", file=sys.stderr)
        return 2
    report = soak(args.bundle, lines=args.lines, max_len=args.max_len, seed=args.seed, beam=args.beam,
                  batch_size=args.batch_size, threads=args.threads, interval=args.interval,
                  warmup=args.warmup, tolerance=args.tolerance, slack_mb=args.slack_mb)
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        print("\n".join(summary(report)))
    if report.passed:
        return 0
    return 2 if report.lines_ok and report.memory == "inconclusive" else 1


if __name__ == "__main__":
    sys.exit(main())
