"""Model folders: which files hold the tokenizer, the query table and the document route in each
published layout (`layout`), and what identifies a model (`identity`: its hashes). Torch-free.

May import: `splade_os.common`.
"""
