"""Board power from PYNQ's rails (PMBus / hwmon sensors), where the board has them.

`pynq.get_rails()` lists the voltage/current/power sensors a PYNQ image knows (ZCU104,
KV260, Ultra96-V2; Pynq-Z1/Z2 have none). Power is sampled on a background thread while
the accelerator runs back-to-back, and once at idle before, so the report can give both.
"""
from __future__ import annotations

import threading
import time
from typing import Callable


def unavailable(reason: str) -> dict:
    return {"available": False, "reason": reason}


def _rails() -> dict:
    import pynq

    return {name: rail.power for name, rail in pynq.get_rails().items() if getattr(rail, "power", None) is not None}


def _sample(sensors: dict) -> dict[str, float]:
    return {name: float(sensor.value) for name, sensor in sensors.items()}


def _mean(samples: list[dict]) -> dict[str, float]:
    return {name: sum(s[name] for s in samples) / len(samples) for name in samples[0]} if samples else {}


def measure(busy: Callable[[], None], seconds: float = 3.0, period_s: float = 0.05) -> dict:
    """Mean power per rail at idle and while `busy` runs repeatedly for `seconds`."""
    try:
        sensors = _rails()
    except Exception as err:  # pynq absent, or its sensor drivers fail: say so, do not fail the benchmark
        return unavailable(f"pynq.get_rails() failed: {err}")
    if not sensors:
        return unavailable("pynq.get_rails() lists no power sensors on this board")
    idle = []
    for _ in range(max(1, int(0.5 / period_s))):
        idle.append(_sample(sensors))
        time.sleep(period_s)
    busy_samples: list[dict] = []
    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            busy_samples.append(_sample(sensors))
            time.sleep(period_s)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    end, runs = time.perf_counter() + seconds, 0
    try:
        while time.perf_counter() < end:
            busy()
            runs += 1
    finally:
        stop.set()
        thread.join()
    idle_w, busy_w = _mean(idle), _mean(busy_samples)
    total = "12V" if "12V" in idle_w else None   # the board's input rail, where PYNQ names one
    return {"available": True, "source": "pynq.get_rails()", "rails_idle_W": idle_w, "rails_busy_W": busy_w,
            "total_rail": total or "sum of rails",
            "idle_W": idle_w[total] if total else sum(idle_w.values()),
            "busy_W": busy_w[total] if total and total in busy_w else sum(busy_w.values()),
            "busy_runs": runs, "samples": len(busy_samples), "seconds": seconds}
