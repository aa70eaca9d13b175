"""Write event chunks to ROOT with uproot (``mktree`` + ``extend``, ZSTD).

Jagged groups are written as awkward records named ``hit``, ``trk`` and ``clus``; uproot
then names the branches ``nhit``, ``hit_channel``, ... exactly as the schema in
:mod:`dpnb.detector` asks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import awkward as ak
import numpy as np
import uproot

from .. import detector as det

__all__ = ["write_events", "COMPRESSION", "chunk_to_branches"]

COMPRESSION = uproot.ZSTD(1)
_GROUPS = {"hit": det.HIT_BRANCHES, "trk": det.TRACK_BRANCHES, "clus": det.CLUSTER_BRANCHES}
_EVENT_DTYPES = {
    "exp": np.int32,
    "run": np.int32,
    "event": np.int64,
    "timestamp": np.float64,
    "hlt_bits": np.uint32,
    "true_process": np.int32,
    "weight": np.float64,
}


def chunk_to_branches(chunk: dict) -> dict:
    """Turn a generated chunk (flat values + offsets) into the dict uproot's ``extend`` takes."""
    out = {k: np.asarray(chunk[k], dtype=dt) for k, dt in _EVENT_DTYPES.items() if k in chunk}
    for group, names in _GROUPS.items():
        counts = np.diff(chunk[f"{group}_offsets"])
        fields = {name[len(group) + 1 :]: ak.unflatten(chunk[name], counts) for name in names}
        out[group] = ak.zip(fields)
    return out


def write_events(path: Path, chunks: Iterable[dict], extra: dict | None = None) -> int:
    """Write chunks to TTree ``events`` in ``path``; ``extra`` maps tree name -> dict of arrays. Returns n_events."""
    n = 0
    with uproot.recreate(path, compression=COMPRESSION) as f:
        tree = None
        for chunk in chunks:
            branches = chunk_to_branches(chunk)
            if tree is None:
                types = {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in branches.items()}
                tree = f.mktree("events", types)
            tree.extend(branches)
            n += len(branches["exp"])
        if tree is None:  # no events: still write an empty tree with the full schema
            empty = {k: np.zeros(1, np.int64) for k in ("hit_offsets", "trk_offsets", "clus_offsets")}
            for names in _GROUPS.values():
                for name in names:
                    empty[name] = np.zeros(0, _value_dtype(name))
            for k, dt in _EVENT_DTYPES.items():
                if k != "weight":
                    empty[k] = np.zeros(0, dt)
            branches = chunk_to_branches(empty)
            types = {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in branches.items()}
            f.mktree("events", types)
        for name, arrays in (extra or {}).items():
            t = f.mktree(name, {k: np.asarray(v).dtype for k, v in arrays.items()})
            t.extend({k: np.asarray(v) for k, v in arrays.items()})
    return n


_FLOAT32 = {"hit_time", "trk_px", "trk_py", "trk_pz", "trk_d0", "trk_z0", "trk_dedx", "trk_res_x", "trk_res_y",
            "clus_energy", "clus_theta", "clus_phi"}


def _value_dtype(name: str):
    return np.float32 if name in _FLOAT32 else np.int32
