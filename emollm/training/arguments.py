"""What both recipes share on the command line: the audio adapter's arguments and the argument parsing.

Each recipe (:mod:`emollm.recipes.sft`, :mod:`emollm.recipes.grpo`) parses four dataclasses with TRL's
``TrlParser``: its own ``ScriptArguments``, TRL's ``SFTConfig``/``GRPOConfig``, TRL's ``ModelConfig`` and
:class:`AdapterArguments`. YAML comes in through ``--config``; every field can be overridden on the command
line. Values are checked when the dataclasses are built (``__post_init__``), so a typo fails before any
prosody is extracted or any model is loaded.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from emollm.errors import ConfigError, check_config
from emollm.modeling.encoders import ENCODERS
from emollm.modeling.frame_norm import NORMALIZATIONS
from emollm.modeling.projectors import PROJECTORS

ROUTES = ("text", "tokens", "both", "none")
"""How the voice reaches the LLM: ``text`` the prosody description in the prompt, ``tokens`` K pseudo-tokens
from an encoder + projector, ``both``, or ``none`` (words only)."""


def route_has_adapters(route: str) -> bool:
    """Whether ``route`` feeds the voice through pseudo-tokens.

    >>> route_has_adapters("both"), route_has_adapters("text")
    (True, False)
    """
    return route in ("tokens", "both")


def route_has_prosody(route: str) -> bool:
    """Whether ``route`` shows the prosody description in the prompt.

    >>> route_has_prosody("both"), route_has_prosody("tokens")
    (True, False)
    """
    return route in ("text", "both")


@dataclass
class AdapterArguments:
    """The audio adapter (routes tokens and both), and optionally a second encoder at the same placeholder.

    With ``second_encoder`` the ``<|audio|>`` placeholder gets ``num_tokens + second_num_tokens`` vectors: the
    first encoder's projector fills the first K1 slots, the second's the next K2 (e.g. the utterance's prosody
    functionals and its frame-level prosody). Each has its own projector, saved with the checkpoint; both use
    ``normalize`` and ``encoder_path``.
    """

    encoder: str = field(
        default="prosody_frames",
        metadata={"help": f"encoder: {', '.join(ENCODERS)}", "choices": list(ENCODERS)},
    )
    encoder_path: str | None = field(
        default=None, metadata={"help": "local model folder for hf_audio/vision"}
    )
    projector: str = field(
        default="mlp", metadata={"help": f"projector: {', '.join(PROJECTORS)}", "choices": list(PROJECTORS)}
    )
    num_tokens: int = field(default=8, metadata={"help": "K pseudo-tokens that replace <|audio|>"})
    projector_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "peak learning rate of the projector (LLaVA's mm_projector_lr); default learning_rate"
        },
    )
    normalize: str = field(
        default="none",
        metadata={
            "help": "none, or speaker: z-score the encoder's frames per speaker (label-free statistics)",
            "choices": list(NORMALIZATIONS),
        },
    )
    second_encoder: str | None = field(
        default=None,
        metadata={
            "help": f"a second encoder at the same <|audio|> placeholder, with its own projector: "
            f"{', '.join(ENCODERS)} (default: none)"
        },
    )
    second_projector: str | None = field(
        default=None, metadata={"help": "the second encoder's projector (default: the same as projector)"}
    )
    second_num_tokens: int = field(default=8, metadata={"help": "K pseudo-tokens of the second encoder"})

    def __post_init__(self):
        if str(self.second_encoder).lower() in ("none", "null", ""):
            self.second_encoder = None
        problems = []
        for name in ("num_tokens", "second_num_tokens"):
            if getattr(self, name) < 1:
                problems.append(f"{name} is {getattr(self, name)}; it must be >= 1")
        if self.second_encoder is not None and self.second_encoder not in ENCODERS:
            problems.append(
                f"second_encoder {self.second_encoder!r} is unknown; accepted: {', '.join(ENCODERS)}"
            )
        if self.second_encoder == self.encoder:
            problems.append(f"second_encoder is {self.second_encoder!r}, the same as encoder; choose another")
        if self.second_projector is not None and self.second_projector not in PROJECTORS:
            problems.append(
                f"second_projector {self.second_projector!r} is unknown; accepted: {', '.join(PROJECTORS)}"
            )
        if self.projector_learning_rate is not None and self.projector_learning_rate <= 0:
            problems.append(f"projector_learning_rate is {self.projector_learning_rate}; it must be > 0")
        check_config(self, problems)

    def to_specs(self, modality: str = "audio") -> list:
        """The :class:`~emollm.modeling.adapters.AdapterSpec` list these arguments describe.

        One adapter keyed by the modality; with a second encoder, two keyed by their encoders' names.

        >>> [(s.key, s.num_tokens) for s in AdapterArguments(num_tokens=4).to_specs()]
        [('audio', 4)]
        >>> args = AdapterArguments("prosody_functionals", num_tokens=4, second_encoder="prosody_frames")
        >>> [(s.key, s.num_tokens) for s in args.to_specs()]
        [('prosody_functionals', 4), ('prosody_frames', 8)]
        """
        from emollm.modeling.adapters import AdapterSpec

        settings = {"path": self.encoder_path} if self.encoder_path else {}
        first = AdapterSpec(
            modality, self.encoder, self.projector, self.num_tokens, settings, normalize=self.normalize
        )
        if self.second_encoder is None:
            return [first]
        first.name = self.encoder
        second = AdapterSpec(
            modality,
            self.second_encoder,
            self.second_projector or self.projector,
            self.second_num_tokens,
            dict(settings),
            normalize=self.normalize,
            name=self.second_encoder,
        )
        return [first, second]


def check_recipe_config(script_args) -> list[str]:
    """Problems shared by both recipes' ``ScriptArguments`` (the caller adds its own and raises once)."""
    from emollm.data import corpus_problem

    problems = [p for p in [corpus_problem("dataset", script_args.dataset)] if p]
    for name in ("train_limit", "eval_limit", "workers"):
        value = getattr(script_args, name)
        if value is not None and value < 1:
            problems.append(f"{name} is {value}; it must be >= 1")
    if script_args.context_turns < 0:
        problems.append(f"context_turns is {script_args.context_turns}; it must be >= 0")
    from emollm.labels import parse_label_option
    from emollm.prompting import template_path

    checks = [lambda: template_path(script_args.strategy), lambda: parse_label_option(script_args.labels)]
    for check in checks:
        try:
            check()
        except ConfigError as exc:
            problems.append(str(exc))
    return problems


def asks_for_tags(strategy: str) -> bool | None:
    """Whether template ``strategy`` asks for ``<think>``/``<answer>``; None when it cannot be read.

    >>> asks_for_tags("cot"), asks_for_tags("minimal"), asks_for_tags("no-such-template")
    (True, False, None)
    """
    from emollm.inputs import PromptBuilder

    try:
        return PromptBuilder(None, strategy, ["x"]).asks_for_tags
    except ConfigError:
        return None  # reported by check_recipe_config


def parse_recipe_args(parser, args: list | None = None):
    """``parser.parse_args_and_config(args)``, refusing transformers' deprecated checkpointing names.

    ``gradient_checkpointing`` is an alias of ``activation_checkpointing`` that transformers reads only when
    the new name is unset; every emollm config sets it, so ``--gradient_checkpointing true`` (or the key in a
    YAML) would be silently ignored. Both spellings of the flag and the YAML keys are refused.

    Raises:
        ConfigError: a deprecated name; any bad value (from the dataclasses' ``__post_init__``).
    """
    argv = [str(a) for a in (sys.argv[1:] if args is None else args)]
    names = {a.split("=")[0][2:].replace("-", "_") for a in argv if a.startswith("--")}
    path = None
    if "config" in names:
        at = next(i for i, a in enumerate(argv) if a.split("=")[0] == "--config")
        path = argv[at].split("=", 1)[1] if "=" in argv[at] else argv[at + 1] if at + 1 < len(argv) else None
        if path and Path(path).is_file():
            try:
                loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as exc:
                where = getattr(exc, "problem_mark", None)
                line = f" line {where.line + 1}, column {where.column + 1}" if where is not None else ""
                problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
                raise ConfigError(f"--config {path}{line}: not valid YAML ({problem})") from exc
            if not isinstance(loaded, dict):
                raise ConfigError(f"--config {path}: a YAML mapping of option: value is expected")
            names |= set(loaded)
    old = sorted(n for n in names if n.startswith("gradient_checkpointing"))
    if old:
        new = [n.replace("gradient_", "activation_") for n in old]
        raise ConfigError(
            f"{', '.join(old)}: transformers' deprecated name (removed in v6), which it ignores when "
            f"activation_checkpointing is set, as every emollm config sets it; use {', '.join(new)} "
            f"(--{new[0]} on the command line)"
        )
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"--config {path}: no such file")
    try:
        parsed = parser.parse_args_and_config(args=argv)
    except ConfigError:
        raise
    except (
        ValueError,
        OSError,
    ) as exc:  # TRL/transformers' own checks: an unknown YAML key, bf16 on a CPU...
        raise ConfigError(str(exc)) from exc
    check_lora(next((p for p in parsed if hasattr(p, "lora_r") and hasattr(p, "use_peft")), None))
    return parsed


def check_lora(model_args) -> None:
    """Refuse LoRA settings PEFT would reject only after the data and model have loaded.

    >>> from types import SimpleNamespace
    >>> check_lora(SimpleNamespace(use_peft=True, lora_r=-4, lora_alpha=8, lora_dropout=0.0))
    Traceback (most recent call last):
    ...
    emollm.errors.ConfigError: ModelConfig: lora_r is -4; it must be >= 1
    """
    if model_args is None or not model_args.use_peft:
        return
    problems = []
    if model_args.lora_r < 1:
        problems.append(f"lora_r is {model_args.lora_r}; it must be >= 1")
    if model_args.lora_alpha <= 0:
        problems.append(f"lora_alpha is {model_args.lora_alpha}; it must be > 0")
    if not 0 <= model_args.lora_dropout < 1:
        problems.append(f"lora_dropout is {model_args.lora_dropout}; it must be in [0, 1)")
    if problems:
        raise ConfigError(f"ModelConfig: {'; '.join(problems)}")
