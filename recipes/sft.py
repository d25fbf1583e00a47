# Copyright the emollm authors. Licensed under the Apache License, Version 2.0.
"""The SFT recipe as a script, for ``accelerate launch``: the same as ``emollm sft``.

    python recipes/sft.py --config recipes/configs/ravdess/sft_both.yaml
    accelerate launch --config_file recipes/accelerate/multi_gpu.yaml recipes/sft.py --config ...

The recipe itself, reading top to bottom (load data -> describe/encode -> model -> train -> save ->
evaluate), is ``emollm/recipes/sft.py``.
"""

from emollm.recipes.sft import cli

if __name__ == "__main__":
    cli()
