"""A learning rate of its own for the projectors (LLaVA's ``mm_projector_lr``), for both trainers.

A projector starts from random weights while LoRA starts from zero updates on a trained LLM, so the two
often want different step sizes. ``projector_learning_rate=None`` (the default) keeps one rate for all.
"""

from __future__ import annotations

from emollm.modeling.adapters import get_projectors


class ProjectorLearningRateMixin:
    """Put before the TRL trainer in the bases; moves the projectors' parameters into their own groups.

    The trainer's optimizer is built as usual (weight-decay and no-decay groups), then every group that holds
    projector parameters is split in two: the same settings, with ``lr=projector_learning_rate`` for the
    projector's part. The scheduler, created afterwards, scales each group from its own rate (warm-up and
    decay keep their shape). Resuming needs the same setting, since the optimizer state has one entry per
    group.

    Args:
        projector_learning_rate: Peak learning rate of the projectors; None: ``args.learning_rate``.
    """

    def __init__(self, *args, projector_learning_rate: float | None = None, **kwargs):
        self.projector_learning_rate = projector_learning_rate
        super().__init__(*args, **kwargs)

    def create_optimizer(self, *args, **kwargs):
        """The trainer's optimizer, with the projectors' parameters in groups of their own rate."""
        fresh = self.optimizer is None
        optimizer = super().create_optimizer(*args, **kwargs)
        if not fresh or self.projector_learning_rate is None:
            return optimizer
        projectors = get_projectors(self.model)
        mine = {id(p) for p in projectors.parameters()} if projectors is not None else set()
        groups = []
        for group in optimizer.param_groups:
            settings = {k: v for k, v in group.items() if k != "params"}
            rest = [p for p in group["params"] if id(p) not in mine]
            own = [p for p in group["params"] if id(p) in mine]
            groups += [{**settings, "params": rest}] if rest else []
            groups += [{**settings, "params": own, "lr": self.projector_learning_rate}] if own else []
        optimizer.param_groups = groups
        return optimizer
