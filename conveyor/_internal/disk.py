"""Whether a disk is full: a write that a library makes in C (LightGBM's ``save_model``, XGBoost,
HDF5) or SQLite ("disk I/O error") may fail without an errno that says why, and then only the
disk can tell.
"""

from __future__ import annotations

import os

FULL_BYTES = 1 << 20  # free space below which a failed write is taken for a full disk


def is_full(path: str | os.PathLike[str]) -> bool:
    """Whether the disk holding ``path`` has less than ``FULL_BYTES`` free for this user (root
    may use the blocks kept for it); False when ``path`` cannot be looked at."""
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    free = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return free * st.f_frsize < FULL_BYTES
