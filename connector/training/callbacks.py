"""Trainer callbacks of splade-os training: sparsity by target, a servable query table, the best checkpoint.

- `MeasuredFlops`: the FLOPS regularizer of `SpladeLoss`, which also records how many
  dimensions the batch's documents activate (the loss sees them anyway: no extra forward).
- `DocDimsController`: sets `SpladeLoss.document_regularizer_weight` each step (below zero if
  need be) so that documents stay near a target number of active dimensions. FLOPS at a fixed weight cuts dimensions by
  an amount nobody chose (issue #15: 285 -> 92 at the seed's weight on a 66M-parameter model);
  the right weight depends on the model, the data and the step count, so it is found by
  feedback instead. It subclasses sentence-transformers' regularizer-weight scheduler, so the
  trainer does not add its own quadratic warm-up on top (it adds one only when no callback of
  that class holds the loss); the controller starts from a small weight instead.
- `NonNegativeQueryTable`: projects the static query table onto weights >= 0 after every
  optimizer step. A `rank_feature` boost cannot be negative, so search drops such tokens: a
  table that goes negative in training is not the table that is served.
- `KeepBest`: remembers the first evaluation (the start) and the weights of the best one after
  it, asks for an evaluation at the last step, and evaluates an interpolation toward the start.
- `ValidationEvaluator`: sentence-transformers' retrieval evaluator that also keeps each query's
  nDCG@10, so the gate can tell a gain from the noise of a few hundred queries.
"""

import math
from typing import Dict, List, Optional

from sentence_transformers.sparse_encoder.callbacks.splade_callbacks import SpladeRegularizerWeightSchedulerCallback
from sentence_transformers.sparse_encoder.evaluation import SparseInformationRetrievalEvaluator
from sentence_transformers.sparse_encoder.losses import FlopsLoss
from transformers import TrainerCallback


def corpus_dims(metrics: Optional[Dict[str, float]]) -> Optional[float]:
    """The corpus active dimensions in an evaluation's metrics (keys carry the evaluator's prefix)."""
    return next((v for k, v in (metrics or {}).items() if k.endswith("corpus_active_dims")), None)


class MeasuredFlops(FlopsLoss):
    """`FlopsLoss` that keeps the mean active dimensions of the last documents it regularized."""

    def __init__(self, model, threshold: Optional[float] = None):
        super().__init__(model, threshold)
        self._dims = None  # a 0-d tensor: read as a float only when asked (no device sync per batch)

    @property
    def active_dims(self) -> Optional[float]:
        return None if self._dims is None else float(self._dims)

    def compute_loss_from_embeddings(self, embeddings):
        self._dims = (embeddings.detach() > 0).sum(dim=1).float().mean()
        return super().compute_loss_from_embeddings(embeddings)


class DocDimsController(SpladeRegularizerWeightSchedulerCallback):
    """Feedback on the document regularizer weight: documents end near `target` active dimensions.

    Each step, the smoothed active dimensions `d` of the batch's documents are compared with the
    target `t`, and the weight moves by `gain * ln(d / t) * max(|weight|, floor)`: relative steps
    while the weight is large, steps of `floor` near zero. Too many dimensions raise it, too few
    lower it, below zero if need be: the ranking loss alone drives dimensions down (on hard
    negatives, lowering shared activations lowers the negatives' scores), and a negative FLOPS
    weight rewards activation, the one counter-force. The weight stays within `bounds`.

    The target is on real documents; the training batch's documents can be shorter (crops,
    truncation), so the batch's own target is the target scaled by the ratio measured at the
    start: batch dims at step 0 over `start_doc_dims` (the validation corpus's active dims at
    the start, when known). With `target=None`, the start's batch dims are the target: the
    model keeps the sparsity it started with.

    Args:
        loss: the `SpladeLoss` whose `document_regularizer_weight` is set.
        flops: its document regularizer (a `MeasuredFlops`).
        target: active dimensions per document to end near; None: the start's.
        start_weight: the weight of the first step.
        gain, floor, smoothing, bounds: controller settings (what they did in the runs measured
            so far is in docs/training.md, "Sparsity by target").
    """

    def __init__(self, loss, flops: MeasuredFlops, target: Optional[float] = None, start_weight: float = 1e-5,
                 gain: float = 1.0, floor: float = 1e-3, smoothing: float = 0.8, bounds=(-0.1, 0.1)):
        super().__init__(loss)
        self.flops, self.target, self.gain, self.floor = flops, target, gain, floor
        self.smoothing, self.bounds = smoothing, bounds
        self.weight = start_weight
        self.start_doc_dims: Optional[float] = None
        self.batch_target: Optional[float] = None
        self.smoothed: Optional[float] = None
        self.history: List[Dict[str, float]] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.loss.document_regularizer_weight = self.weight

    on_train_begin = on_step_begin

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.start_doc_dims is None and state.global_step == 0:
            self.start_doc_dims = corpus_dims(metrics)

    def on_step_end(self, args, state, control, **kwargs):
        dims = self.flops.active_dims
        if dims is None:
            return
        if self.batch_target is None:
            scale = dims / self.start_doc_dims if self.start_doc_dims else 1.0
            self.batch_target = max(1.0, self.target * scale if self.target else dims)
            self.smoothed = dims
        self.smoothed = self.smoothing * self.smoothed + (1 - self.smoothing) * dims
        error = math.log(max(self.smoothed, 1e-3) / self.batch_target)
        weight = self.weight + self.gain * error * max(abs(self.weight), self.floor)
        self.weight = min(max(weight, self.bounds[0]), self.bounds[1])
        self.history.append({"step": state.global_step, "doc_active_dims": dims, "weight": self.weight})

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and self.smoothed is not None:
            logs["doc_active_dims"] = round(self.smoothed, 1)
            logs["document_regularizer_weight"] = self.weight


class NonNegativeQueryTable(TrainerCallback):
    """Clamp the static query table at 0 when training starts and after every optimizer step.

    Attributes:
        clamped_at_start: how many weights were negative in the starting model.
    """

    def __init__(self, table):
        self.table = table
        self.clamped_at_start = 0

    def on_train_begin(self, args, state, control, **kwargs):
        import torch

        with torch.no_grad():
            self.clamped_at_start = int((self.table < 0).sum())
            self.table.clamp_(min=0.0)

    def on_step_end(self, args, state, control, **kwargs):
        import torch

        with torch.no_grad():
            self.table.clamp_(min=0.0)


class KeepBest(TrainerCallback):
    """The start's validation metrics, and the weights of the best evaluation after it.

    Args:
        metric: the metric to maximise: the evaluation metric whose key ends with `_<metric>`
            (the trainer prefixes the evaluator's name and score function).
        min_doc_dims: a checkpoint whose corpus active dimensions fall below this is no candidate
            (sparser than asked for); None: no floor. A callable gets the start's active dims.

    Attributes:
        start: the metrics of the first evaluation (before any step).
        best: the metrics of the best evaluation after a step; `best_step` its step.
        history: step, metric, corpus active dims and seconds of every evaluation.
        too_sparse: the steps whose checkpoint fell below `min_doc_dims`.
    """

    def __init__(self, metric: str, evaluator=None, min_doc_dims=None):
        self.metric, self.evaluator, self.min_doc_dims = metric, evaluator, min_doc_dims
        self.too_sparse: List[int] = []
        self.last: Optional[Dict[str, float]] = None  # the latest evaluation's metrics and step
        self.last_step: Optional[int] = None
        self.start_per_query: Optional[List[float]] = None
        self.best_per_query: Optional[List[float]] = None
        self.start: Optional[Dict[str, float]] = None
        self.best: Optional[Dict[str, float]] = None
        self.best_step: Optional[int] = None
        self.best_state = None
        self.start_value = self.best_value = float("-inf")
        self.history: List[Dict[str, float]] = []
        self.interpolation: Optional[float] = None
        self.checkpoint: Optional[Dict[str, float]] = None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_evaluate = True  # the last weights are always a candidate

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        key = next((k for k in (metrics or {}) if k.endswith(f"_{self.metric}")), None)
        if key is None:
            return
        value = metrics[key]
        dims = corpus_dims(metrics)
        self.history.append({"step": state.global_step, "value": value, "corpus_active_dims": dims,
                             "seconds": metrics.get("eval_runtime")})
        per_query = list(getattr(self.evaluator, "per_query_ndcg", None) or [])
        self.last, self.last_step = dict(metrics), state.global_step
        if self.start is None:
            self.start, self.start_value, self.start_per_query = dict(metrics), value, per_query
            if callable(self.min_doc_dims):
                self.min_doc_dims = self.min_doc_dims(dims) if dims is not None else None
        elif self.min_doc_dims is not None and dims is not None and dims < self.min_doc_dims:
            self.too_sparse.append(state.global_step)
        elif self.best is None or value > self.best_value:
            self.best, self.best_step, self.best_value = dict(metrics), state.global_step, value
            self.best_per_query = per_query
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def gain(self) -> Dict[str, float]:
        """The best checkpoint's mean per-query nDCG@10 gain over the start, and its z score."""
        start, best = self.start_per_query or [], self.best_per_query or []
        if not start or len(start) != len(best):
            return {"gain": self.best_value - self.start_value, "z": float("nan")}
        diffs = [b - a for a, b in zip(start, best)]
        mean = sum(diffs) / len(diffs)
        spread = math.sqrt(sum((d - mean) ** 2 for d in diffs) / max(1, len(diffs) - 1))
        z = mean / (spread / math.sqrt(len(diffs))) if spread > 0 else 0.0
        return {"gain": mean, "z": z}

    def interpolated(self, model, share: float) -> None:
        """Evaluate `model`, whose weights were moved back toward the start (`share` of the way to
        the kept checkpoint, or to the last weights when none was kept): its evaluation becomes the
        kept one, which the gate judges; the checkpoint's stays in `checkpoint`."""
        metrics = {f"eval_{k}": v for k, v in self.evaluator(model).items()}
        key = next(k for k in metrics if k.endswith(f"_{self.metric}"))
        self.checkpoint = self.best if self.best is not None else self.last
        if self.best_step is None:
            self.best_step = self.last_step
        self.best, self.best_value, self.interpolation = metrics, metrics[key], share
        self.best_per_query = list(getattr(self.evaluator, "per_query_ndcg", None) or [])
        self.best_state = None

    def restore(self, model) -> bool:
        """Load the best weights into `model`; False when no evaluation after the start happened."""
        if self.best_state is None:
            return False
        model.load_state_dict(self.best_state)
        return True



class ValidationEvaluator(SparseInformationRetrievalEvaluator):
    """`SparseInformationRetrievalEvaluator` that also keeps each query's nDCG@10 (`per_query_ndcg`).

    nDCG@10 per query is computed as sentence-transformers computes its mean (binary relevance,
    ties broken by document id), in the order of `queries_ids`.
    """

    per_query_ndcg: Optional[List[float]] = None

    def compute_metrics(self, queries_result_list):
        scores = super().compute_metrics(queries_result_list)
        per_query = []
        for query_id, results in zip(self.queries_ids, queries_result_list):
            relevant = self.relevant_docs[query_id]
            top = sorted(results, key=lambda x: (-x["score"], x["corpus_id"]))[:10]
            gains = [1 if hit["corpus_id"] in relevant else 0 for hit in top]
            ideal = self.compute_dcg_at_k([1] * len(relevant), 10)
            per_query.append(self.compute_dcg_at_k(gains, 10) / ideal if ideal else 0.0)
        self.per_query_ndcg = per_query
        return scores
