"""SEMA attention against full softmax attention: time and peak memory per token grid.

Each case runs in a forked child process so that its peak memory (``ru_maxrss`` on the CPU,
``max_memory_allocated`` on CUDA) is its own.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import statistics
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

from ..model.attention import AttentionMode, SEMAAttention


@dataclass(frozen=True)
class AttentionCase:
    mode: AttentionMode
    side: int
    device: str
    ms: float | None
    peak_mib: float | None
    note: str = ""


def _time_case(
    mode: AttentionMode, side: int, device: str, dim: int, heads: int, window: int, repeats: int
) -> tuple[float, float]:
    torch.manual_seed(0)
    dev = torch.device(device)
    attn = SEMAAttention(dim, heads, window, mode=mode).to(dev).eval()
    x = torch.randn(1, side, side, dim, device=dev)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_gpu = torch.cuda.memory_allocated()
    times = []
    with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype, enabled=dev.type == "cuda"):
        for i in range(repeats + 1):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            attn(x)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if i:  # the first run warms up kernels and caches
                times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        peak = (torch.cuda.max_memory_allocated() - base_gpu) / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    return statistics.median(times) * 1000, peak


def _child(queue: mp.Queue, *args: object) -> None:
    try:
        queue.put(_time_case(*args))  # type: ignore[arg-type]
    except Exception as err:  # report to the parent instead of dying silently
        queue.put(err)


def run_case(
    mode: AttentionMode, side: int, device: str, *, dim: int = 256, heads: int = 8, window: int = 16, repeats: int = 3
) -> tuple[float, float]:
    """Median milliseconds and peak MiB of one forward pass, in a fresh process (CPU) or here (CUDA)."""
    if device.startswith("cuda"):
        return _time_case(mode, side, device, dim, heads, window, repeats)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, mode, side, device, dim, heads, window, repeats))
    proc.start()
    result = queue.get()
    proc.join()
    if isinstance(result, Exception):
        raise result
    return result


def bench_attention(device: str, sides: list[int], budget_s: float = 10.0, repeats: int = 3) -> Iterator[AttentionCase]:
    """SEMA (window 16 + mean) and full attention on ``side x side`` grids; full attention stops
    once its next grid (4x the tokens, ~16x the time) is predicted to exceed ``budget_s``."""
    full_ms: float | None = None
    stopped = ""
    for side in sides:
        ms, peak = run_case("window", side, device, repeats=repeats)
        yield AttentionCase("window", side, device, ms, peak)
        if not stopped and full_ms is not None and full_ms * 16 / 1000 > budget_s:
            stopped = f"skipped: predicted over {budget_s:g} s (x16 the {full_ms / 1000:.1f} s of the grid before)"
        if stopped:
            yield AttentionCase("full", side, device, None, None, stopped)
            continue
        full_ms, peak_full = run_case("full", side, device, repeats=1 if side >= 128 else repeats)
        over = full_ms / 1000 > budget_s
        yield AttentionCase("full", side, device, full_ms, peak_full, f"over the {budget_s:g} s budget" if over else "")
        if over:
            stopped = f"skipped: the grid before took over {budget_s:g} s"


def summarize(cases: list[AttentionCase]) -> dict[str, object]:
    """Growth of SEMA from 256² to 512² tokens, and the speed-up at the largest common grid."""
    sema = {c.side: c.ms for c in cases if c.mode == "window" and c.ms}
    full = {c.side: c.ms for c in cases if c.mode == "full" and c.ms and not c.note}
    out: dict[str, object] = {"summary": "attention"}
    if 256 in sema and 512 in sema:
        out["sema_time_512_over_256"] = round(sema[512] / sema[256], 3)
    common = sorted(set(sema) & set(full))
    if common:
        side = common[-1]
        out["largest_common_side"] = side
        out["full_over_sema_at_largest_common"] = round(full[side] / sema[side], 2)
    return out


def main(device: str = "auto", sides: list[int] | None = None, budget_s: float = 10.0) -> None:
    from ..inference.devices import select_device

    dev = str(select_device(device))
    cases = []
    for case in bench_attention(dev, sides or [32, 64, 128, 256, 512], budget_s):
        cases.append(case)
        print(json.dumps({"bench": "attention", **asdict(case), "tokens": case.side**2}), flush=True)
    print(json.dumps(summarize(cases)), flush=True)
