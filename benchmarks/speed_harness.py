"""The timing machinery of ``bench_speed.py``: one worker process per configuration, interleaved rounds, the table.

Each configuration (a runtime with its model) lives in its own worker process
(``speed_worker.py``), started once and kept waiting on its standard input: the parent asks
the workers in turn for one *round* (``reps`` inferences, timed inside the worker, their mean),
round-robin over the configurations for ``rounds`` rounds, each round starting one
configuration later, with a short pause between two requests (the previous runtime's threads stop
spinning). A slow or noisy stretch of the machine thus falls on every configuration alike; the
median round of each is its figure. A worker's peak memory is its own ``VmHWM`` (the peak
resident set of that process, from ``/proc/self/status``), read when it quits: the interpreter, the
runtime's libraries and the loaded model together.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

WORKER = pathlib.Path(__file__).resolve().with_name("speed_worker.py")
#: Seconds between two round requests (ORT's and TVM's pool threads spin a little after a run).
PAUSE = 0.05
#: CPU flags the header reports.
FEATURES = ("avx2", "avx512f", "avx512bw", "avx512_vnni")


def cpu_info(text: Optional[str] = None) -> tuple[str, dict[str, bool]]:
    """The CPU's model name and which of :data:`FEATURES` it has, from ``/proc/cpuinfo`` (or ``text``)."""
    if text is None:
        text = pathlib.Path("/proc/cpuinfo").read_text(encoding="utf-8")
    model, flags = "unknown CPU", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown CPU":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return model, {name: name in flags for name in FEATURES}


def peak_rss_mb(status: Optional[str] = None) -> float:
    """The process's peak resident set (``VmHWM``) in MiB, from ``/proc/self/status`` (or its text)."""
    if status is None:
        status = pathlib.Path("/proc/self/status").read_text(encoding="utf-8")
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            value, unit = line.split()[1:3]
            if unit != "kB":
                raise ValueError(f"VmHWM in {unit!r}, expected kB")
            return int(value) / 1024
    raise ValueError("no VmHWM line in the status text (not Linux?)")


@dataclass
class Worker:
    """One configuration's worker process: started with its spec, then asked for rounds."""

    name: str
    spec: dict[str, Any]
    threads: int
    process: Optional[subprocess.Popen] = None
    ready: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        env = {**os.environ, "TVM_NUM_THREADS": str(self.threads), "OMP_NUM_THREADS": str(self.threads),
               **self.spec.get("env", {})}
        spec = {**self.spec, "threads": self.threads}
        self.process = subprocess.Popen([sys.executable, str(WORKER), json.dumps(spec)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env)
        self.ready = self._reply()

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._reply()

    def _reply(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            raise RuntimeError(f"worker {self.name!r} ended (exit {code}) without answering; its stderr says why")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"worker {self.name!r}: {reply['error']}")
        return reply

    def stop(self) -> float:
        """Ends the worker; its peak RSS in MiB."""
        reply = self.ask("quit")
        assert self.process is not None
        self.process.wait(timeout=60)
        return float(reply["peak_rss_mb"])


@dataclass
class Timing:
    """One configuration's rounds: per-inference milliseconds of each round, in the order they ran."""

    name: str
    rounds: list[float] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)  # each round's (start, end), monotonic clock
    peak_rss_mb: Optional[float] = None
    reps: int = 0
    error: str = ""

    @property
    def median_ms(self) -> float:
        return statistics.median(self.rounds)


def interleave(workers: Sequence[Worker], rounds: int, pause: float = PAUSE) -> dict[str, Timing]:
    """Round-robin ``rounds`` rounds over started ``workers`` (round ``r`` starts with worker ``r % n``)."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    timings = {w.name: Timing(w.name, reps=int(w.ready.get("reps", 1))) for w in workers}
    for r in range(rounds):
        for i in range(len(workers)):
            worker = workers[(r + i) % len(workers)]
            reply = worker.ask("run")
            timings[worker.name].rounds.append(float(reply["ms"]))
            timings[worker.name].spans.append((float(reply["start"]), float(reply["end"])))
            time.sleep(pause)
    return timings


def run_interleaved(workers: Sequence[Worker], rounds: int, pause: float = PAUSE) -> dict[str, Timing]:
    """Start the workers, interleave, stop them (peak RSS recorded).

    A worker that fails to start is left out of the rounds; its :class:`Timing` has no rounds and
    its ``error`` says why.
    """
    started: list[Worker] = []
    failed: dict[str, Timing] = {}
    try:
        for worker in workers:
            try:
                worker.start()
                started.append(worker)
            except RuntimeError as err:
                failed[worker.name] = Timing(worker.name, error=str(err))
        timings = interleave(started, rounds, pause) if started else {}
        for worker in started:
            timings[worker.name].peak_rss_mb = worker.stop()
        return {**timings, **failed}
    finally:
        for worker in started:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.kill()


@dataclass
class Row:
    """One table row: a configuration of a model, its time (or why none) and its costs."""

    model: str
    config: str
    ms: Optional[float] = None
    build_s: Optional[float] = None
    peak_rss_mb: Optional[float] = None
    note: str = ""
    baseline: bool = False  # the model's float runtime, the ratios' denominator


def _cell(value: Optional[float], fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def table(rows: Sequence[Row]) -> str:
    """The markdown table: each row's median, its ratio to its model's baseline row, build time, peak RSS."""
    base = {r.model: r.ms for r in rows if r.baseline and r.ms is not None}
    lines = ["| model | configuration | median ms | vs float runtime | build s | peak RSS MiB | note |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        ratio = None if r.ms is None or r.model not in base else r.ms / base[r.model]
        lines.append(f"| {r.model} | {r.config} | {_cell(r.ms, '{:.2f}')} | {_cell(ratio, '{:.2f}x')} "
                     f"| {_cell(r.build_s, '{:.1f}')} | {_cell(r.peak_rss_mb, '{:.0f}')} | {r.note} |")
    return "\n".join(lines)
