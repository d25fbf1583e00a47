# Copyright the emollm authors. Licensed under the Apache License, Version 2.0.
"""The GRPO recipe as a script, for ``accelerate launch``: the same as ``emollm grpo``.

    python recipes/grpo.py --config recipes/configs/ravdess/grpo_text.yaml
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/grpo.py --config ...

The recipe itself, reading top to bottom (rewards -> data -> model -> evaluate before -> GRPO -> save ->
evaluate after), is ``emollm/recipes/grpo.py``.
"""

from emollm.recipes.grpo import cli

if __name__ == "__main__":
    cli()
