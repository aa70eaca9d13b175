"""Built-in Python selections, for skims whose logic reads better as code than as one expression.

Use them in a skim file as ``selection: {function: tau_pair}``.
"""

from __future__ import annotations

import numpy as np

from ..kernels import select as ks
from .definitions import register_selection

__all__ = ["tau_pair"]

#: largest two-track mass (GeV) for a tau pair: above it the event looks like mu mu / e e
TAU_MAX_PAIR_MASS_GEV = 9.0
#: largest summed cluster energy (GeV): neutrinos carry energy away in tau pairs
TAU_MAX_CLUSTER_ENERGY_GEV = 7.0
#: most clusters: tau decays give few photons, hadronic events many
TAU_MAX_CLUSTERS = 3


@register_selection(
    "tau_pair",
    columns=("ntrk", "nclus", "trk_charge", "ntrk_lead_hemi", "ntrk_opp_hemi", "m_2trk", "e_clus_total"),
    doc="tau pair: 2-4 tracks, zero net charge, 1-1/1-3 topology, missing energy, few clusters",
)
def tau_pair(cols) -> np.ndarray:
    """Tau-pair candidates: 2 to 4 tracks of zero net charge split 1-1, 1-2 or 1-3 between
    the hemispheres of the leading track, two-track mass below ``TAU_MAX_PAIR_MASS_GEV``
    summed cluster energy below ``TAU_MAX_CLUSTER_ENERGY_GEV`` (neutrinos escape) and at most
    ``TAU_MAX_CLUSTERS`` clusters."""
    ntrk = cols["ntrk"]
    charge = ks.sum_per_event(cols["trk_charge"], cols.offsets("trk"), cols.n_threads)
    same = cols["ntrk_lead_hemi"]
    opp = cols["ntrk_opp_hemi"]
    one_prong_side = (np.minimum(same, opp) == 1) & (np.maximum(same, opp) <= 3)
    with np.errstate(invalid="ignore"):
        low_mass = cols["m_2trk"] < TAU_MAX_PAIR_MASS_GEV
    return (
        (ntrk >= 2) & (ntrk <= 4) & (charge == 0) & one_prong_side & low_mass
        & (cols["e_clus_total"] < TAU_MAX_CLUSTER_ENERGY_GEV) & (cols["nclus"] <= TAU_MAX_CLUSTERS)
    )
