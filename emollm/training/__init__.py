"""Training: the multimodal collator, the SFT pieces, GRPO and its verifiable rewards.

TRL is the training engine; these modules add what emotion SFT needs on top of it: pseudo-token
injection inside the loss, label/reasoning targets, emollm checkpoints and resuming (``resume``), the
recipes' shared arguments (``arguments``) and model builders (``models``). The recipes in
:mod:`emollm.recipes` put them together.
"""

from emollm.training.collators import MultimodalCollator
from emollm.training.grpo import EmotionGRPOTrainer, build_grpo_examples
from emollm.training.rewards import REWARDS, get_reward_funcs
from emollm.training.sft import (
    EmotionSFTTrainer,
    build_examples,
    count_parameters,
    make_completion,
    prepare_for_training,
    template_rationale,
)

__all__ = [
    "REWARDS",
    "EmotionGRPOTrainer",
    "EmotionSFTTrainer",
    "MultimodalCollator",
    "build_examples",
    "build_grpo_examples",
    "count_parameters",
    "get_reward_funcs",
    "make_completion",
    "prepare_for_training",
    "template_rationale",
]
