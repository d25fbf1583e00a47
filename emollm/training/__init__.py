"""Training: the multimodal collator and the SFT pieces (GRPO follows the same pattern).

TRL is the training engine; these modules add what emotion SFT needs on top of it: pseudo-token
injection inside the loss, label/reasoning targets, and emollm checkpoints. The recipes in ``recipes/``
put them together.
"""

from emollm.training.collators import MultimodalCollator
from emollm.training.sft import (
    EmotionSFTTrainer,
    build_examples,
    count_parameters,
    make_completion,
    prepare_for_training,
    template_rationale,
)

__all__ = [
    "EmotionSFTTrainer",
    "MultimodalCollator",
    "build_examples",
    "count_parameters",
    "make_completion",
    "prepare_for_training",
    "template_rationale",
]
