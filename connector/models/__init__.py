"""Which model: resolving a model from a folder, a hub id, the bundled default or the cluster's
registry (`resolve`: `Model`, `resolve_model`), the registry itself (`registry`: push, pull, the
query sides stored by hash), building the default model and IDF tables (`builder`), a
corpus's own IDF model (`corpus_idf`), and writing a model in OpenSearch's layout (`export`).

May import: `splade_os.common`, `corpus`, `formats`, `query`, `documents`, `bulk`.
"""
