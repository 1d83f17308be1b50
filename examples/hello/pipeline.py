"""Hello, conveyor: four small steps on the Palmer penguins.

    conveyor run examples/hello/pipeline.py

ingest reads the CSV into Parquet, clean drops rows with missing measurements, profile
writes per-species means, and train fits a nearest-centroid classifier and scores it on a
held-out fifth. Run it twice: the second run comes from cache.
"""

from __future__ import annotations

import json
from pathlib import Path

from conveyor import FilePath, Input, Output, Parameter, Pipeline, component
from conveyor.artifacts import Artifact, Examples, Model

DATA = Path(__file__).parent / "data" / "penguins.csv"
FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


@component
def ingest(examples: Output[Examples], *, csv_file: Parameter[FilePath]) -> None:
    """Read the CSV with Arrow and store it as Parquet."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pacsv.read_csv(csv_file)
    pq.write_table(table, Path(examples.uri) / "data.parquet")
    examples.properties["rows"] = table.num_rows
    print(f"read {table.num_rows} rows, {table.num_columns} columns from {Path(csv_file).name}")


@component
def clean(raw: Input[Examples], examples: Output[Examples]) -> None:
    """Drop rows that miss a measurement; count what was dropped."""
    import polars as pl

    df = pl.read_parquet(Path(raw.uri) / "data.parquet")
    kept = df.drop_nulls(FEATURES)
    kept.write_parquet(Path(examples.uri) / "data.parquet")
    examples.properties.update(rows=kept.height, dropped=df.height - kept.height)
    print(f"kept {kept.height} rows, dropped {df.height - kept.height}")


@component
def profile(examples: Input[Examples], report: Output[Artifact]) -> None:
    """Mean of each measurement per species."""
    import polars as pl

    df = pl.read_parquet(Path(examples.uri) / "data.parquet")
    means = df.group_by("species").agg([pl.col(f).mean() for f in FEATURES]).sort("species")
    (Path(report.uri) / "species_means.json").write_text(json.dumps(means.to_dicts(), indent=2))
    report.properties["species"] = means["species"].to_list()


@component
def train(examples: Input[Examples], model: Output[Model], *, holdout_every: Parameter[int] = 5) -> None:
    """A nearest-centroid classifier on standardised measurements; every n-th row is held out."""
    import numpy as np
    import polars as pl

    df = pl.read_parquet(Path(examples.uri) / "data.parquet").with_row_index()
    test = df.filter(pl.col("index") % holdout_every == 0)
    fit = df.filter(pl.col("index") % holdout_every != 0)
    x = fit.select(FEATURES).to_numpy()
    mean, std = x.mean(axis=0), x.std(axis=0)
    species = sorted(fit["species"].unique().to_list())
    centroids = np.stack([((fit.filter(pl.col("species") == s).select(FEATURES).to_numpy() - mean) / std).mean(axis=0) for s in species])
    z = (test.select(FEATURES).to_numpy() - mean) / std
    predicted = np.array(species)[np.argmin(((z[:, None, :] - centroids[None]) ** 2).sum(axis=2), axis=1)]
    accuracy = float((predicted == test["species"].to_numpy()).mean())
    params = {"features": FEATURES, "mean": mean.tolist(), "std": std.tolist(), "classes": species, "centroids": centroids.tolist()}
    (Path(model.uri) / "centroids.json").write_text(json.dumps(params, indent=2))
    model.properties.update(accuracy=accuracy, test_rows=test.height)
    print(f"held-out accuracy {accuracy:.3f} on {test.height} rows")


def create_pipeline() -> Pipeline:
    raw = ingest(csv_file=str(DATA))
    cleaned = clean(raw=raw.outputs["examples"])
    summary = profile(examples=cleaned.outputs["examples"])
    model = train(examples=cleaned.outputs["examples"])
    return Pipeline(name="hello", components=[raw, cleaned, summary, model])
