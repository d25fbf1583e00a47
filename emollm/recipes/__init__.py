"""The training recipes, shipped with the package like TRL's scripts: ``emollm sft`` and ``emollm grpo``.

Each module reads top to bottom (``main``), has a ``make_parser`` (TRL's ``TrlParser`` over its dataclasses:
YAML via ``--config``, any field overridable on the command line) and a ``cli`` entry point.
``recipes/sft.py`` and ``recipes/grpo.py`` in a source checkout run the same ``cli`` (for
``accelerate launch``, which takes a script path).
"""
