"""Draw the bundled sample, ``data/narratives.csv.gz``, from the CFPB complaint narratives.

    python examples/complaints_text/make_data.py PATH/TO/complaint_narratives/narratives.csv

Each narrative's product, as filed (21 CFPB names over three eras), is mapped to one of six
groups (``GROUPS``); products outside them (money transfers, prepaid cards, ...: 2% of rows)
are left out. From each group the ``PER_GROUP`` narratives with the smallest sha256 of their
text are taken: a draw that is random with respect to the text, and the same on every run.
Rows keep the source's order. See data/SOURCE.md.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
PER_GROUP = 200
GROUPS = {
    "credit_reporting": [
        "Credit reporting",
        "Credit reporting, credit repair services, or other personal consumer reports",
        "Credit reporting or other personal consumer reports",
        "Credit reporting, repair, or other",
    ],
    "debt_collection": ["Debt collection"],
    "mortgage": ["Mortgage"],
    "credit_card": ["Credit card", "Credit card or prepaid card"],
    "bank_account": ["Bank account or service", "Checking or savings account"],
    "loan": [
        "Payday loan, title loan, or personal loan",
        "Payday loan, title loan, personal loan, or advance loan",
        "Payday loan",
        "Consumer Loan",
        "Student loan",
        "Vehicle loan or lease",
    ],
}
COLUMNS = ["complaint_id", "date_received", "cfpb_product", "product", "consumer_complaint_narrative"]


def main() -> None:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("narratives", type=Path, help="narratives.csv of the complaint_narratives dataset")
    parser.add_argument("--out", type=Path, default=HERE / "data" / "narratives.csv.gz")
    args = parser.parse_args()

    rows = pd.read_csv(args.narratives, dtype=str, keep_default_na=False)
    group = {name: g for g, names in GROUPS.items() for name in names}
    rows = rows.assign(cfpb_product=rows["product"], product=rows["product"].map(group))
    rows = rows[rows["product"].notna()]
    digest = rows["consumer_complaint_narrative"].map(lambda text: hashlib.sha256(text.encode()).hexdigest())
    ranked = rows.assign(digest=digest).sort_values("digest")
    sample = ranked.groupby("product").head(PER_GROUP).sort_index()[COLUMNS]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(args.out, "wb", compresslevel=9, mtime=0) as file:  # mtime 0: the same bytes every run
        sample.to_csv(file, index=False, lineterminator="\n")
    print(f"{len(sample)} narratives, {PER_GROUP} a product group, written to {args.out}")


if __name__ == "__main__":
    main()
