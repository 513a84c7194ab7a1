"""Training inference-free SPLADE models: the trainer and its recipe (`trainer`), self-supervised
pairs (`pairs`), hard negatives mined from an index (`negatives`), a teacher's scores
(`teacher`) and the trainer's callbacks (`callbacks`).

May import: every package but `cli`.
"""
