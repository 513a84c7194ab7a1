"""The document side: the model's document route (a masked-LM transformer and SPLADE max
pooling, `encoder.DocumentEncoder`, with its int8 screen in `projection` and the pooling module
in `pooling`), the sparse vectors it makes (`vectors`), and what an index keeps of a document
(`settings`: `IndexSettings`, the names splade-os reserves). torch is imported only by the
encoder, when it is built.

May import: `splade_os.common`, `splade_os.corpus`, `splade_os.formats`.
"""
