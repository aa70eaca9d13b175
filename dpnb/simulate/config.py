"""Scales of the toy experiment: how big a dataset is and which runs it holds.

A :class:`SimConfig` fixes everything that is *not* random: detector size, the run plan
(run types, fills, durations), instantaneous luminosity, cross sections, prescales, the
sizes of the detector faults and of the MC samples. The random constants drawn from it
(T0s, shifts, beam spot, gains, E_cm) are in :mod:`dpnb.simulate.truth`.

Physics notes (a toy, documented so reviewers know what to expect)
-----------------------------------------------------------------
* The collider is symmetric (no boost): mu-mu pairs are back to back with |p| = E_cm/2.
* Cross sections are in nb at the nominal E_cm (10.58 GeV); point-like processes scale as
  1/s, B-pair production (``mixed``, ``charged``) follows a narrow resonance shape with
  the BB threshold at 10.559 GeV (so continuum runs at 10.52 GeV have no BB events).
* Bhabha (``ee``) and gamma-gamma events are prescaled (``PRESCALES``); a stored event
  count is ``sigma * L * prescale``.
* The instantaneous luminosity is low (~100 Hz/µb = 1e32 cm^-2 s^-1, early running) so
  that the toy stays small; all units are nevertheless the real ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..detector import N_LAYERS, N_MODULES, N_WIRES_PER_LAYER

__all__ = ["SimConfig", "SCALES", "CROSS_SECTIONS_NB", "PRESCALES", "NOMINAL_ECM_BY_TYPE", "get_scale"]

#: e+e- cross sections at E_cm = 10.58 GeV, in nb (Belle II physics book orders of magnitude)
CROSS_SECTIONS_NB = {
    "uubar": 1.61,
    "ddbar": 0.40,
    "ssbar": 0.38,
    "ccbar": 1.30,
    "mixed": 0.51,
    "charged": 0.54,
    "mumu": 1.148,
    "ee": 74.4,  # within the barrel acceptance
    "gammagamma": 3.30,
    "taupair": 0.919,
}

#: fraction of events kept (trigger prescale) per process; 1 when absent
PRESCALES = {"ee": 0.02, "gammagamma": 0.25}

#: nominal E_cm (GeV) per physics run type; scan runs take their points from SimConfig.scan_ecm_gev
NOMINAL_ECM_BY_TYPE = {"4S": 10.58, "continuum": 10.52}


@dataclass(frozen=True)
class SimConfig:
    """Everything fixed about one scale of the toy experiment (units in the field names)."""

    name: str
    exp: int = 1
    n_layers: int = N_LAYERS
    n_wires_per_layer: int = N_WIRES_PER_LAYER
    n_modules: int = N_MODULES
    #: run types of the physics runs 1..N, in order
    physics_runs: tuple[str, ...] = ()
    #: number of cosmic runs appended after the physics runs
    n_cosmic_runs: int = 1
    cosmic_events_per_run: int = 1000
    #: physics runs per fill (the last fill may hold fewer)
    runs_per_fill: int = 4
    run_duration_s: int = 1800
    lumi_bin_s: int = 60
    #: peak instantaneous luminosity of a fill (Hz/µb) and its decay time (s)
    peak_lumi_hz_per_ub: float = 0.1
    lumi_lifetime_s: float = 20000.0
    #: physics run before which E_cm steps (None: half way through the physics runs)
    ecm_step_run: int | None = None
    scan_ecm_gev: tuple[float, ...] = (10.57, 10.60)
    #: detector faults
    hot_fraction: float = 0.003
    dead_fraction: float = 0.01
    hot_factor: float = 40.0
    noise_fraction: float = 0.03
    hit_efficiency: float = 0.95
    #: transverse momentum (GeV) above which a track reaches the outermost layer
    pt_full_reach_gev: float = 0.25
    #: MC events generated per generic sample
    mc_events: int = 2000
    #: events per generation chunk (bounds memory)
    chunk_events: int = 20000
    start_time: int = 1772409600  # 2026-03-02 00:00 UTC

    @property
    def n_channels(self) -> int:
        return self.n_layers * self.n_wires_per_layer

    @property
    def n_physics_runs(self) -> int:
        return len(self.physics_runs)

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        """Raise :class:`dpnb.errors.ParameterError` listing every bad (negative, empty) field."""
        from ..errors import ParameterError

        problems = []
        for key in ("exp", "n_layers", "n_wires_per_layer", "n_modules", "runs_per_fill", "run_duration_s", "lumi_bin_s"):
            if getattr(self, key) <= 0:
                problems.append(f"{key} = {getattr(self, key)!r}: expected a positive integer")
        for key in ("n_cosmic_runs", "cosmic_events_per_run", "mc_events", "peak_lumi_hz_per_ub"):
            if getattr(self, key) < 0:
                problems.append(f"{key} = {getattr(self, key)!r}: expected a count >= 0")
        if self.chunk_events <= 0:
            problems.append(f"chunk_events = {self.chunk_events!r}: expected a positive integer")
        if self.run_duration_s % max(self.lumi_bin_s, 1):
            problems.append(f"run_duration_s = {self.run_duration_s} is not a multiple of lumi_bin_s = {self.lumi_bin_s}")
        if not self.physics_runs:
            problems.append("physics_runs is empty: expected at least one physics run")
        for i, t in enumerate(self.physics_runs):
            if t not in ("4S", "continuum", "scan"):
                problems.append(f"physics_runs[{i}] = {t!r}: expected one of 4S, continuum, scan")
        for key in ("hot_fraction", "dead_fraction", "noise_fraction", "hit_efficiency"):
            v = getattr(self, key)
            if not 0.0 <= v <= 1.0:
                problems.append(f"{key} = {v!r}: expected a fraction in [0, 1]")
        if self.ecm_step_run is not None and not 1 < self.ecm_step_run <= self.n_physics_runs:
            problems.append(f"ecm_step_run = {self.ecm_step_run}: expected a physics run in 2..{self.n_physics_runs}")
        if problems:
            msg = f"invalid simulation scale {self.name!r}"
            raise ParameterError(msg, problems)


def _demo_runs() -> tuple[str, ...]:
    runs = ["4S"] * 40
    for r in (8, 9, 27, 28, 29):  # continuum blocks (1-based run numbers)
        runs[r - 1] = "continuum"
    for r in (17, 35):
        runs[r - 1] = "scan"
    return tuple(runs)


SCALES: dict[str, SimConfig] = {
    "tiny": SimConfig(
        name="tiny",
        n_layers=8,
        n_wires_per_layer=64,
        n_modules=4,
        physics_runs=("4S", "4S", "continuum", "4S", "scan", "4S"),
        n_cosmic_runs=1,
        cosmic_events_per_run=600,
        runs_per_fill=3,
        run_duration_s=1200,
        peak_lumi_hz_per_ub=80.0,
        ecm_step_run=4,
        mc_events=500,
        chunk_events=5000,
    ),
    "demo": SimConfig(
        name="demo",
        physics_runs=_demo_runs(),
        n_cosmic_runs=3,
        cosmic_events_per_run=1500,
        runs_per_fill=7,
        run_duration_s=1800,
        peak_lumi_hz_per_ub=140.0,
        ecm_step_run=21,
        mc_events=3000,
    ),
    "large": SimConfig(
        name="large",
        physics_runs=tuple(["4S"] * 100 + ["continuum"] * 20),  # ~59 pb^-1: ~1.5e8 hits
        n_cosmic_runs=5,
        cosmic_events_per_run=20000,
        runs_per_fill=10,
        run_duration_s=3600,
        peak_lumi_hz_per_ub=300.0,
        ecm_step_run=61,
        mc_events=20000,
        chunk_events=50000,
    ),
}


def get_scale(scale) -> SimConfig:
    """The :class:`SimConfig` of a scale name (or a SimConfig itself, validated)."""
    from ..errors import ParameterError

    if isinstance(scale, SimConfig):
        cfg = scale
    else:
        if scale not in SCALES:
            msg = f"unknown simulation scale {scale!r}; expected one of {sorted(SCALES)}"
            raise ParameterError(msg)
        cfg = SCALES[scale]
    cfg.validate()
    return cfg
