"""Fills, stable-beam segments, run windows and the luminosity files of the toy experiment.

Model
-----
* Physics runs are grouped into fills (``SimConfig.runs_per_fill``). A fill starts with
  15 min of injection (no collisions), then stable beams start at a time that is *not* a
  bin edge (so the first bin has a fractional ``stab``). The second fill loses stable
  beams for 10 min between two of its runs, so it has two stable-beam segments.
* The instantaneous luminosity (Hz/µb) decays exponentially from the start of collisions.
  Each Massi line is one ``lumi_bin_s`` bin starting at ``time``; ``l`` is the bin average.
* Runs are whole bins inside stable beams. A run's recorded luminosity is the
  stab-weighted integral of its bins: ``sum(stab * l * dt)`` (µb^-1), i.e. exactly what
  the Massi file gives for its window; ``lumi_pb = that * 1e-6``. There is no dead time.
* ``dl = 1 % of l``; ``sl`` (specific luminosity) is ``l / 1000`` with 1 % error.
* run_lumi.csv: ``stat_pb = 0.2 %`` and ``sys_pb = 1.4 %`` of ``lumi_pb``.
* Cosmic runs come after the last fill, outside any fill (``fill = 0``), zero luminosity,
  magnet off.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..io.lumi_files import massi_paths, write_massi_lumi, write_massi_summary, write_run_lumi, write_version_files
from ..units import UB_INV_PER_PB_INV
from .config import SimConfig

__all__ = ["RunPlan", "FillPlan", "plan_runs", "write_lumi_files", "LUMI_STAT_REL", "LUMI_SYS_REL"]

LUMI_STAT_REL = 0.002
LUMI_SYS_REL = 0.014
FIRST_FILL = 8001
INJECTION_S = 900
SB_EDGE_OFFSET_S = 23  # stable beams start/stop this many seconds into a bin


@dataclass
class RunPlan:
    """One run: its window (UNIX s, [start, stop)), fill and lumi bins (times s, Hz/µb)."""

    run: int
    run_type: str
    fill: int
    start_time: int
    stop_time: int
    magnet_on: bool
    dq_flag: str
    bin_times: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    bin_lumi: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    bin_s: int = 60

    @property
    def lumi_ub(self) -> float:
        """Recorded integrated luminosity (µb^-1): the Massi integral over the window (stab = 1)."""
        return float(np.sum(self.bin_lumi * self.bin_s))

    @property
    def lumi_pb(self) -> float:
        return self.lumi_ub / UB_INV_PER_PB_INV


@dataclass
class FillPlan:
    """One fill: its Massi bins and stable-beam segments [(start, stop) UNIX s]."""

    fill: int
    time: np.ndarray
    stab: np.ndarray
    lumi: np.ndarray
    segments: list[tuple[float, float]]
    bin_s: int

    def segment_summary(self) -> list[tuple[float, float, float, float]]:
        """(timestart, timestop, peak Hz/µb, integrated µb^-1) per stable-beam segment."""
        out = []
        for a, b in self.segments:
            sel = (self.time + self.bin_s > a) & (self.time < b)
            integ = float(np.sum(self.stab[sel] * self.lumi[sel] * self.bin_s))
            peak = float(np.max(self.lumi[sel])) if sel.any() else 0.0
            out.append((a, b, peak, integ))
        return out


def _stab(time: np.ndarray, bin_s: int, segments) -> np.ndarray:
    stab = np.zeros(len(time))
    for a, b in segments:
        overlap = np.clip(np.minimum(time + bin_s, b) - np.maximum(time, a), 0, None)
        stab += overlap / bin_s
    return np.clip(stab, 0.0, 1.0)


def plan_runs(cfg: SimConfig, bad_runs: tuple[int, ...] = ()) -> tuple[list[RunPlan], list[FillPlan]]:
    """The run plan and fills of a scale (deterministic: no random numbers)."""
    dt = cfg.lumi_bin_s
    run_bins = cfg.run_duration_s // dt
    gap_bins = 2
    runs: list[RunPlan] = []
    fills: list[FillPlan] = []
    t = cfg.start_time
    physics = list(enumerate(cfg.physics_runs, start=1))
    groups = [physics[i : i + cfg.runs_per_fill] for i in range(0, len(physics), cfg.runs_per_fill)]
    for ifill, group in enumerate(groups):
        fill = FIRST_FILL + ifill
        fill_start = t
        coll_start = fill_start + INJECTION_S
        sb_start = coll_start + SB_EDGE_OFFSET_S
        # runs begin at the first whole bin after stable beams start
        first_bin = fill_start + ((sb_start - fill_start) // dt + 1) * dt
        windows = []
        segments = []
        seg_start = sb_start
        cursor = first_bin
        for k, (run, rtype) in enumerate(group):
            if ifill == 1 and k == len(group) // 2 and k > 0:
                # lose stable beams for 10 min: close the segment and reopen it
                segments.append((seg_start, cursor + SB_EDGE_OFFSET_S))
                cursor += 10 * dt + dt
                seg_start = cursor - dt + SB_EDGE_OFFSET_S + 7
            windows.append((run, rtype, cursor, cursor + run_bins * dt))
            cursor += (run_bins + gap_bins) * dt
        sb_stop = cursor + 3 * dt + SB_EDGE_OFFSET_S
        segments.append((seg_start, sb_stop))
        fill_stop = sb_stop - SB_EDGE_OFFSET_S + 10 * dt
        time = np.arange(fill_start, fill_stop, dt, dtype=np.int64)
        mid = time + 0.5 * dt
        lumi = np.where(
            mid >= coll_start,
            cfg.peak_lumi_hz_per_ub * np.exp(-(mid - coll_start) / cfg.lumi_lifetime_s),
            0.0,
        )
        stab = _stab(time, dt, segments)
        fills.append(FillPlan(fill, time, stab, lumi, segments, dt))
        for run, rtype, a, b in windows:
            sel = (time >= a) & (time < b)
            assert np.all(stab[sel] == 1.0)  # runs lie inside stable beams by construction
            runs.append(
                RunPlan(run, rtype, fill, int(a), int(b), True, "bad" if run in bad_runs else "good",
                        time[sel].copy(), lumi[sel].copy(), dt)
            )
        t = int(fill_stop + 3600)
    for k in range(cfg.n_cosmic_runs):
        run = cfg.n_physics_runs + 1 + k
        runs.append(RunPlan(run, "cosmic", 0, int(t), int(t + cfg.run_duration_s), False, "good", bin_s=dt))
        t += cfg.run_duration_s + 300
    return runs, fills


def write_lumi_files(root: Path, cfg: SimConfig, runs: list[RunPlan], fills: list[FillPlan], expt: str) -> None:
    """Write ``lumi/<fill>/`` Massi files and ``lumi/run_lumi.csv`` under ``root``."""
    lumi_dir = Path(root) / "lumi"
    for f in fills:
        paths = massi_paths(lumi_dir, f.fill, expt)
        dl = 0.01 * f.lumi
        sl = f.lumi / 1000.0
        write_massi_lumi(paths["lumi"], f.time, f.stab, f.lumi, dl, sl, 0.01 * sl)
        write_massi_summary(paths["summary"], f.segment_summary())
        write_version_files(
            paths["dir"],
            "1.0",
            {
                "1": "luminometer (1 = toy counting luminometer of dpnb simulate)",
                "2": "calibration level",
                "2 0": f"toy calibration, {cfg.name} scale, {cfg.lumi_bin_s} s bins",
            },
        )
    lp = np.array([r.lumi_pb for r in runs])
    table = pd.DataFrame({
        "exp": cfg.exp, "run": [r.run for r in runs], "run_type": [r.run_type for r in runs],
        "lumi_pb": lp, "stat_pb": LUMI_STAT_REL * lp, "sys_pb": LUMI_SYS_REL * lp,
    })  # fmt: skip
    write_run_lumi(lumi_dir / "run_lumi.csv", table)
