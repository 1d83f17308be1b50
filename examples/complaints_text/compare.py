"""Which features tell the product group better: tf-idf, the sentence embedding, or both? Cross-validated.

    conveyor run examples/complaints_text/pipeline.py --root ROOT
    python examples/complaints_text/compare.py --root ROOT

The pipeline's Trainers each score one eval split of about 240 narratives, where a gap of
0.01 AUC is within the noise. This scores all 1,200 rows, in 5 folds (stratified, seed 0),
from the Embedder's output in ROOT: the same logistic regressions as module.py (its ``C``),
tf-idf from scikit-learn's TfidfVectorizer with the module's settings (lower case, runs of
letters and digits, words in 2 rows or more, sublinear tf), refitted on each fold's training
rows. It prints each set's macro AUC (one class against the rest) and the gaps between them
fold by fold: the same folds for every set, so the gaps are paired.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from module import EMBEDDING, LABEL, TEXT, C

FOLDS = 5


def main() -> None:
    import pandas as pd
    import scipy.sparse as sp
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("conveyor_root"), help="the root the pipeline ran in")
    root = parser.parse_args().root
    outputs = sorted((root / "complaints_text" / "Embedder" / "embedded_examples").glob("*/Split-*/*.parquet"))
    if not outputs:
        msg = f"no Embedder output under {root}: run the pipeline with --root {root} first."
        raise SystemExit(msg)
    newest = outputs[-1].parents[1]
    rows = pd.concat([pd.read_parquet(f) for f in outputs if f.parents[1] == newest], ignore_index=True)
    text = rows[TEXT].fillna("").str.lower()
    embedding = sp.csr_matrix(rows[EMBEDDING].to_numpy(np.float64))
    labels = rows[LABEL].to_numpy()

    aucs: dict[str, list[float]] = {name: [] for name in C}
    for train, test in StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(text, labels):
        words = TfidfVectorizer(token_pattern=r"[a-z0-9]+", min_df=2, sublinear_tf=True).fit(text.iloc[train])
        sets = {
            "tfidf": lambda i, w=words: w.transform(text.iloc[i]),
            "embedding": lambda i: embedding[i],
            "both": lambda i, w=words: sp.hstack([w.transform(text.iloc[i]), embedding[i]]).tocsr(),
        }
        for name, features in sets.items():
            model = LogisticRegression(C=C[name], max_iter=3000).fit(features(train), labels[train])
            scores = model.predict_proba(features(test))
            aucs[name].append(roc_auc_score(labels[test], scores, multi_class="ovr", labels=model.classes_))
    print(f"{len(rows)} narratives, {FOLDS} folds: macro AUC, one product group against the rest")
    for name, values in aucs.items():
        print(f"  {name:<10} AUC {np.mean(values):.4f} (folds {min(values):.4f} to {max(values):.4f})")
    for better, worse in (("both", "tfidf"), ("both", "embedding"), ("tfidf", "embedding")):
        gaps = np.subtract(aucs[better], aucs[worse])
        print(f"  {better} - {worse}: {gaps.mean():+.4f} (folds {gaps.min():+.4f} to {gaps.max():+.4f})")


if __name__ == "__main__":
    main()
