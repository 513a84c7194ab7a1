"""Writing a model in an engine's native layout (`splade-os export`): OpenSearch's, for now.

OpenSearch publishes its inference-free ("doc-only") neural-search models as a masked-LM folder:
`config.json`, the weights and the tokenizer files at the root, and the query table as `idf.json`
({token: weight}) beside them; ml-commons serves the queries with a `SPARSE_TOKENIZE` model built
from `tokenizer.json` + `idf.json` (docs/export.md says how to register both halves). `export_model`
writes any model `--model` resolves in that layout, and keeps sentence-transformers' files beside it
(`modules.json`, a Router whose document module is the root, as OpenSearch's v3 models ship it), so
the one folder loads three ways with the same numbers:

- `idf.json` lists EVERY vocabulary token, zeros included, so the two rules for a missing token
  (OpenSearch's 1.0, sentence-transformers' `from_json` 0) never apply. Weights are the float32
  table's values written as the shortest decimal of the same double: parsed back as a double
  (Python) or straight to a float (Java), they give the same float32.
- The sentence-transformers query module holds that table as `model.safetensors`, because
  sentence-transformers looks a relative `idf.json` path up in the working directory or on a
  model hub, never in the model folder.
- The masked-LM's files are copied byte for byte, so the export has the source's document
  fingerprint and query hash: an index built with one accepts the other.

What cannot be carried over is refused or said: sum pooling or a second `log1p` (OpenSearch
max-pools with one `log1p(relu(.))`), a query tokenizer whose vocabulary is not the document
route's (the layout has one tokenizer), weights only in a pickle. OpenSearch's runtime drops
special tokens from queries; a model that gives one a non-zero weight is exported as it is, with a
warning, since only there would that token weigh 0.
"""

import json
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Dict, Optional

from splade_os.common.errors import InputError, ModelError
from splade_os.common.files import staged_dir
from splade_os.formats.layout import (DOCUMENT_MODULE_TYPES, POOLING_MODULE_TYPES, QUERY_MODULE_TYPES,
                                      max_length_of, read_layout)
from splade_os.query.pack import QUERY_SIDE_FILE, query_side_document

LAYOUTS = ("opensearch",)
QUERY_MODULE, POOLING_MODULE = "query_0_SparseStaticEmbedding", "document_1_SpladePooling"
DOCUMENT_MODULE = ""  # the repository root, where OpenSearch keeps the masked-LM
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt",
                   "added_tokens.json", "vocab.json", "merges.txt", "sentencepiece.bpe.model", "spiece.model")
WEIGHT_FILES = ("config.json", "generation_config.json", "model.safetensors.index.json")
# sentence-transformers 6's class paths, for a source that has none of its own (OpenSearch's older layout).
ST_TYPES = {
    "Router": "sentence_transformers.base.modules.router.Router",
    "query": "sentence_transformers.sparse_encoder.modules.sparse_static_embedding.SparseStaticEmbedding",
    "document": "sentence_transformers.base.modules.transformer.Transformer",
    "pooling": "sentence_transformers.sparse_encoder.modules.splade_pooling.SpladePooling",
}
ST_MLM_CONFIG = {"transformer_task": "fill-mask",
                 "modality_config": {"text": {"method": "forward", "method_output_name": "logits"}},
                 "module_output_name": "token_embeddings"}
ST_MODEL_CONFIG = {"model_type": "SparseEncoder", "prompts": {"query": "", "document": ""},
                   "default_prompt_name": None, "similarity_fn_name": "dot"}
ROUTER_PARAMETERS = {"default_route": "document", "allow_empty_key": True, "route_mappings": {}}


def export_model(model, directory, layout: str = "opensearch", overwrite: bool = False) -> Path:
    """Write `model` into `directory` in an engine's layout (see the module docstring).

    Args:
        model: a `splade_os.models.resolve.Model` (`resolve_model` takes every `--model` form).
        directory: the folder to write; written in a staging folder and renamed, so a failed
            export leaves nothing half-written.
        layout: "opensearch" (the only one so far).
        overwrite: replace `directory` when it holds a model already (an earlier export).

    Returns:
        The folder written.

    Raises:
        InputError: unknown layout; `directory` is not empty (without `overwrite`), holds other
            files than a model, or holds the model being exported.
        ModelError: the model cannot be written in that layout (see the module docstring).
    """
    if layout not in LAYOUTS:
        raise InputError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    target = Path(directory).expanduser()
    _check_target(target, model.root, overwrite)
    source = model.layout
    _check_opensearch_can_run(source)
    encoder = model.query_encoder
    specials = _weighted_specials(encoder)
    with staged_dir(target) as staging:
        staging.chmod(0o755)  # a staging folder is private; an export is made to be shared
        _write_masked_lm(source, staging, encoder)
        _write_idf(encoder, staging / "idf.json")
        _write_sentence_transformers(source, encoder, staging)
        # The query side as apps in other languages read it (clients/java, clients/js; docs/apps.md).
        (staging / QUERY_SIDE_FILE).write_text(json.dumps(query_side_document(encoder)), encoding="utf-8")
        (staging / "README.md").write_text(model_card(model, specials), encoding="utf-8")
    if specials:
        warnings.warn(f"{_listed(specials)}: special tokens with a non-zero query weight; exported as they are, "
                      "but OpenSearch's SPARSE_TOKENIZE runtime drops special tokens (weight 0 there)")
    return target


def _check_target(target: Path, source_root: Path, overwrite: bool) -> None:
    if target.exists() and not target.is_dir():
        raise InputError(f"{target}: exists and is not a folder")
    resolved, source = target.resolve(), Path(source_root).resolve()
    if resolved == source or resolved in source.parents or source in resolved.parents:
        raise InputError(f"{target}: overlaps the folder of the model being exported ({source}); export elsewhere")
    if not target.is_dir() or not any(target.iterdir()):
        return
    if not overwrite:
        raise InputError(f"{target}: exists and is not empty; export into a new folder, or replace it with --overwrite")
    try:  # replacing deletes the folder: only ever a model folder (an earlier export), never anything else
        read_layout(target)
    except ModelError:
        raise InputError(f"{target}: holds files that are not a model; --overwrite replaces only a model folder") \
            from None


def _check_opensearch_can_run(source) -> None:
    """OpenSearch computes documents one way (its model cards', ml-commons' sparse models'): max pooling,
    one log1p(relu(.)); a model computed otherwise would give other vectors there."""
    if (source.pooling_strategy, source.activation_function) != ("max", "relu"):
        raise ModelError(
            f"{source.root}: pools documents with {source.pooling_strategy} and {source.activation_function}; "
            "OpenSearch's doc-only models are max-pooled with one log1p(relu), so this model has no OpenSearch layout")
    if source.pickled_weights:
        raise ModelError(f"{source.document_dir}: the masked-LM's weights exist only as pytorch_model.bin (a pickle); "
                         "export writes safetensors only: convert them first")
    if not any(source.document_dir.glob("*.safetensors")):
        raise ModelError(f"{source.document_dir}: no masked-LM weights (*.safetensors)")


def _weighted_specials(encoder) -> Dict[str, float]:
    """The special tokens ([CLS], [UNK], ...) the query table gives a non-zero weight."""
    specials = [t.content for t in encoder.tokenizer.get_added_tokens_decoder().values() if t.special]
    vocab = encoder.tokenizer.get_vocab(with_added_tokens=True)
    return {t: float(encoder.table[vocab[t]]) for t in specials if t in vocab and encoder.table[vocab[t]] != 0}


def _listed(weights: Dict[str, float]) -> str:
    return ", ".join(f"{token} {weight:g}" for token, weight in weights.items())


def _copy(folder: Path, names, dest: Path) -> None:
    for name in names:
        if (folder / name).is_file():
            shutil.copyfile(folder / name, dest / name)


def _write_masked_lm(source, staging: Path, encoder) -> None:
    """The masked-LM (config, weights, tokenizer) at the root, with its truncation length written
    where every reader finds it; the tokenizer must be the query side's too (the layout has one)."""
    from tokenizers import Tokenizer

    tokenizer_dir = source.document_tokenizer_file.parent
    if Tokenizer.from_file(str(source.document_tokenizer_file)).get_vocab(with_added_tokens=True) != \
            encoder.tokenizer.get_vocab(with_added_tokens=True):
        raise ModelError(f"{source.root}: the query tokenizer's vocabulary is not the document route's; "
                         "OpenSearch's layout has one tokenizer for both")
    _copy(source.document_dir, WEIGHT_FILES, staging)
    for weights in sorted(source.document_dir.glob("*.safetensors")):
        shutil.copyfile(weights, staging / weights.name)
    _copy(tokenizer_dir, TOKENIZER_FILES, staging)
    # OpenSearch reads the truncation length from the tokenizer files alone: they must say what
    # sentence-transformers' config says (set before that config is there to be read).
    _set_max_length(staging, max_length_of(source.document_dir))
    st_config = source.document_dir / "sentence_bert_config.json"
    if st_config.is_file():
        shutil.copyfile(st_config, staging / st_config.name)
    else:
        (staging / st_config.name).write_text(json.dumps(ST_MLM_CONFIG, indent=4), encoding="utf-8")


def _set_max_length(folder: Path, length: Optional[int]) -> None:
    """Make `length` (None: no limit) the truncation length of `folder`'s tokenizer files
    (`tokenizer_config.json`'s `model_max_length`, `tokenizer.json`'s truncation) when they say otherwise."""
    if max_length_of(folder) == length:
        return
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
    config["model_max_length"] = length if length is not None else int(1e30)  # transformers' "no limit"
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    tokenizer_path = folder / "tokenizer.json"
    data = json.loads(tokenizer_path.read_text(encoding="utf-8"))
    if isinstance(data.get("truncation"), dict) and length is not None:
        data["truncation"]["max_length"] = length
        tokenizer_path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def _write_idf(encoder, path: Path) -> None:
    """Every vocabulary token with its weight, in id order (see the module docstring)."""
    weights = {token: float(weight) for token, weight in zip(encoder.tokens, encoder.table)}
    path.write_text(json.dumps(weights, ensure_ascii=False, indent=0), encoding="utf-8")


def _st_types(root: Path) -> dict:
    """The source's own sentence-transformers class paths and Router parameters (so the version
    that wrote them reads them), else sentence-transformers 6's."""
    found = dict(ST_TYPES, parameters=ROUTER_PARAMETERS)
    try:
        modules = json.loads((root / "modules.json").read_text(encoding="utf-8"))
        router = next(m for m in modules if m.get("type", "").endswith(".Router"))
        config = json.loads((root / router.get("path", "") / "router_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, StopIteration):
        return found
    found["Router"], found["parameters"] = router["type"], config.get("parameters", ROUTER_PARAMETERS)
    for kind, names in (("query", QUERY_MODULE_TYPES), ("document", DOCUMENT_MODULE_TYPES),
                        ("pooling", POOLING_MODULE_TYPES)):
        found[kind] = next((t for t in config.get("types", {}).values() if t.rsplit(".", 1)[-1] in names), found[kind])
    return found


def _write_sentence_transformers(source, encoder, staging: Path) -> None:
    """modules.json, the Router (document module at the root), the query table and the pooling."""
    from safetensors.numpy import save_file

    types = _st_types(source.root)
    (staging / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "", "type": types["Router"]}], indent=2), encoding="utf-8")
    router = {"types": {QUERY_MODULE: types["query"], DOCUMENT_MODULE: types["document"],
                        POOLING_MODULE: types["pooling"]},
              "structure": {"query": [QUERY_MODULE], "document": [DOCUMENT_MODULE, POOLING_MODULE]},
              "parameters": types["parameters"]}
    (staging / "router_config.json").write_text(json.dumps(router, indent=4), encoding="utf-8")
    st_model = source.root / "config_sentence_transformers.json"
    if st_model.is_file():
        shutil.copyfile(st_model, staging / st_model.name)
    else:
        (staging / st_model.name).write_text(json.dumps(ST_MODEL_CONFIG, indent=2), encoding="utf-8")
    query = staging / QUERY_MODULE
    query.mkdir()
    _copy(source.tokenizer_file.parent, TOKENIZER_FILES, query)
    (query / "config.json").write_text(json.dumps({"frozen": False}, indent=4), encoding="utf-8")
    save_file({"weight": encoder.table}, str(query / "model.safetensors"))
    (query / "model.safetensors").chmod(0o644)  # safetensors writes it private, unlike every other file
    _set_max_length(query, encoder.max_length)
    pooling = staging / POOLING_MODULE
    pooling.mkdir()
    (pooling / "config.json").write_text(json.dumps(
        {"pooling_strategy": source.pooling_strategy, "activation_function": source.activation_function},
        indent=4), encoding="utf-8")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("splade-os")
    except PackageNotFoundError:
        return "unknown"


def model_card(model, specials: Dict[str, float]) -> str:
    """The exported folder's README.md: what the model is, where it came from, how to load and register it."""
    identity, layout = model.identity, model.layout
    config = json.loads((layout.document_dir / "config.json").read_text(encoding="utf-8"))
    vocab = len(model.query_encoder.tokens)
    recipe = ""
    source_card = model.root / "README.md"
    if source_card.is_file():  # what `train` wrote: how the model was trained
        found = re.search(r"^## splade-os recipe\n.*?(?=^## |\Z)", source_card.read_text(encoding="utf-8"),
                          flags=re.MULTILINE | re.DOTALL)
        recipe = "\n" + found.group(0).replace("## splade-os recipe", "## Training recipe", 1) if found else ""
    special_note = (f"These special tokens have non-zero query weights: {_listed(specials)}. OpenSearch's runtime "
                    "drops special tokens from queries, so they weigh 0 there (and only there)."
                    if specials else "Special tokens weigh 0.")
    return CARD.format(name=identity.name, source=identity.source, version=identity.version, hash=identity.hash,
                       fingerprint=identity.fingerprint, arch=", ".join(config.get("architectures", [])) or "masked-LM",
                       model_type=config.get("model_type", ""), vocab=vocab,
                       length=max_length_of(layout.document_dir) or 512,  # the document encoder's fallback
                       splade_os=_version(),
                       date=time.strftime("%Y-%m-%d", time.gmtime()), special_note=special_note) + recipe


CARD = """---
tags:
- learned sparse
- opensearch
- sparse-encoder
- splade
- inference-free
- document-expansion
pipeline_tag: feature-extraction
library_name: sentence-transformers
---

# {name}: an inference-free SPLADE model

An inference-free ("doc-only") learned sparse retrieval model. Documents are encoded by a masked-LM
({arch}, `{model_type}`): the MLM logits of each token are max-pooled over the text and passed through
`log(1 + relu(x))`, giving one weight per vocabulary entry ({vocab} dimensions). Queries need no model:
the query is tokenized (no special tokens) and each distinct token weighs what `idf.json` says. A
document's score is the dot product of the two sparse vectors. Documents are truncated at {length} tokens.

## How it was produced

Exported by splade-os {splade_os} on {date} from `{source}` (model {name}, version {version}):

- query hash (vocabulary + query table): `{hash}`
- document fingerprint (query hash + masked-LM weights, config, pooling, length): `{fingerprint}`

## Files

- `config.json`, `model.safetensors`, tokenizer files: the masked-LM (document encoder) and its tokenizer.
- `idf.json`: the query weight of every vocabulary token, zeros included (token -> weight). {special_note}
- `modules.json`, `router_config.json`, `config_sentence_transformers.json`, `sentence_bert_config.json`,
  `query_0_SparseStaticEmbedding/` (the `idf.json` table as safetensors), `document_1_SpladePooling/`:
  the sentence-transformers `SparseEncoder` of the same model.
- `query-side.json`: the query side (tokenizer + table) as one JSON document, what splade-os's Java and
  JavaScript query sides load (the same document splade-os stores in a cluster's `splade-query-sides`).

## Use

- splade-os: `splade-os ingest corpus.jsonl --index docs --model ./this-folder` (same query hash and
  fingerprint as the source: indexes built with either accept the other).
- sentence-transformers: `SparseEncoder("./this-folder")`, then `encode_query` / `encode_document`.
- OpenSearch ml-commons: register the query side (`tokenizer.json` + `idf.json`, zipped) as a
  `SPARSE_TOKENIZE` model, and the document side, traced to TorchScript, as a `SPARSE_ENCODING` model;
  splade-os's docs/export.md gives the requests.
"""
