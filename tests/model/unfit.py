"""Bundles whose model fails on the rows it is sent, which ``conveyor.model.save`` refuses to write
(it scores rows of zeros first): for the tests of what loading and serving do with one, as an
older conveyor or another tool may have written it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from conveyor.model import bundle
from conveyor.model.flavors import flavor_named


def swap_model(folder: str | Path, model: Any) -> Path:
    """Put ``model`` (of the saved model's flavor) in the bundle at ``folder`` in place of the one
    saved there, its files hashed and the manifest sealed again as ``save`` seals them."""
    folder = Path(folder)
    manifest = bundle.read_manifest(folder)
    model_dir = folder / bundle.MODEL_DIR
    shutil.rmtree(model_dir)
    model_dir.mkdir()
    _, manifest["flavor_options"] = flavor_named(manifest["flavor"]).save(model, model_dir)
    manifest["files"] = bundle.hash_files(folder)
    bundle.write_manifest(folder, manifest)
    return folder
