"""Writes the tiny pack the Java unit tests always run on (no model needed): a 60-token BERT-style
WordPiece tokenizer, a table with negative, zero and tied weights, max_length 12, and the
conformance records the Python side gives for a few texts. Run from the repository root with the
project's Python environment:

    python clients/java/src/test/resources/tiny/make.py
"""

import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from splade_os.query.encoder import QueryEncoder
from splade_os.query.pack import write_pack

HERE = Path(__file__).resolve().parent
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["what", "is", "lift", "wing", "the", "of", "a", "b", "c", "3", "5", "50", "net", "drag", "mach",
         "##s", "##ing", "##e", "flow", "boundary", "layer", "heat", "transfer", "air", "##foil", "k",
         "aer", "##o", "cafe", "naive", "zero", "width", "line", "separator"]
PUNCT = list("?!.,%+#-:;'\"()[]/")
# Weights by token: negative ("the", "of"), zero ("is", "[UNK]"), and a three-way tie ("lift", "wing", "drag").
WEIGHTS = {"what": 1.5, "is": 0.0, "lift": 3.0, "wing": 3.0, "drag": 3.0, "the": -0.75, "of": -0.125,
           "?": 0.25, ".": 0.5, "%": 0.625, "[UNK]": 0.0, "[MASK]": 2.0, "##s": 0.1, "flow": 2.5,
           "boundary": 4.0, "layer": 3.5, "heat": 1.25, "transfer": 1.75}
TEXTS = ["what is lift?", "Wings of the aerofoil...", "lift wing drag", "drag wing lift LIFT", "3.5 % 50%",
         "a.b.c", "%2E %25", "[MASK] is [SEP] or [CLS]?", "Café naïve", "zero\u200bwidth line\u2028separator",
         "boundary layer heat transfer boundary layer heat transfer flow of air", "the of", "", "  ", "zzz",
         "lone \ud800 surrogate", "\udfff"]


def main():
    vocab = {token: i for i, token in enumerate(SPECIAL + WORDS + PUNCT)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.add_special_tokens(SPECIAL)
    table = np.full(len(vocab), 0.05, dtype=np.float32)
    for token, weight in WEIGHTS.items():
        table[vocab[token]] = weight
    encoder = QueryEncoder(tokenizer, table, "tiny", 12)
    write_pack(encoder, HERE / "pack", TEXTS, overwrite=True)
    print(json.dumps({"wrote": str(HERE / "pack"), "hash": encoder.hash}))


if __name__ == "__main__":
    main()
