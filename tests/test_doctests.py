"""Run the ``>>>`` examples of the modules whose examples need no model, data or network."""

import doctest
import importlib

import pytest

MODULES = [
    "emollm.labels",
    "emollm.parsing",
    "emollm.prompting",
    "emollm.evaluation.metrics",
    "emollm.evaluation.bootstrap",
    "emollm.modeling.encoders",
    "emollm.modeling.encoders.prosody_frames",
    "emollm.modeling.encoders.vision",
    "emollm.modeling.encoders.cache",
    "emollm.modeling.injection",
    "emollm.modeling.projectors",
    "emollm.modeling.frame_norm",
    "emollm.training.collators",
    "emollm.training.sft",
    "emollm.training.rewards",
    "emollm.training.grpo",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
