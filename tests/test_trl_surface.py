"""The private TRL/transformers surface our trainers override or read still looks as our code expects.

``EmotionGRPOTrainer`` and ``EmotionSFTTrainer`` (with the mixins they share) override methods of
``GRPOTrainer``, ``SFTTrainer`` and ``Trainer``, several of them private, and read a few private attributes
(docs/architecture.md, "Overriding TRL", says why). A private method may change in any release; pyproject.toml
pins TRL to the minor version tested here. These tests make an upgrade fail loudly, naming what changed,
instead of training on silently (an override the base no longer calls) or failing deep inside a step.

The overridden methods are derived from the classes: every non-dunder function in the ``__dict__`` of one of
our classes (the trainer and its ``emollm`` mixins) that the library base also has. :data:`KNOWN_OVERRIDES`
adds the ones written against TRL 1.16, so that a method TRL removes fails here rather than dropping out of
the derived list.
"""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import re
import sys
import textwrap

import pytest

from emollm.training.grpo import EmotionGRPOTrainer
from emollm.training.sft import EmotionSFTTrainer

TRAINERS = [EmotionGRPOTrainer, EmotionSFTTrainer]

KNOWN_OVERRIDES = {
    # GRPOTrainer (trl): pseudo-token slots, generation and log-probabilities from inputs_embeds, frames per row
    "_tokenize_prompts",
    "_generate_and_score_completions",
    "_compute_loss",
    "_generate_single_turn",
    "_get_per_token_logps_and_entropies",
    "_calculate_rewards",
    # SFTTrainer (trl): injection inside the loss
    "compute_loss",
    # Trainer (transformers): emollm checkpoints at every save, projectors restored on resume; their optimizer
    "_save",
    "_load_from_checkpoint",
    "create_optimizer",
}


def _ours(cls) -> bool:
    return cls.__module__.split(".")[0] == "emollm"


def library_base(trainer: type) -> type:
    """The first class of ``trainer``'s MRO that is not ours (``GRPOTrainer``, ``SFTTrainer``)."""
    return next(k for k in trainer.__mro__ if not _ours(k))


def overrides(trainer: type) -> list[tuple[type, str]]:
    """``(our class, method name)`` for each method of ours that the library base has, or had."""
    base = library_base(trainer)
    found = []
    for owner in trainer.__mro__:
        if not _ours(owner):
            continue
        for name, value in vars(owner).items():
            dunder = name.startswith("__") and name.endswith("__")
            if not dunder and inspect.isfunction(value) and (hasattr(base, name) or name in KNOWN_OVERRIDES):
                found.append((owner, name))
    return found


CASES = [(trainer, owner, name) for trainer in TRAINERS for owner, name in overrides(trainer)]


def _library(cls: type) -> str:
    """``"trl 1.16.0"``: the distribution that defines ``cls`` and its installed version."""
    dist = cls.__module__.split(".")[0]
    return f"{dist} {importlib.metadata.version(dist)}"


def _defining_class(cls: type, name: str) -> type:
    return next(k for k in cls.__mro__ if name in vars(k))


def _params(function) -> list[inspect.Parameter]:
    return list(inspect.signature(function).parameters.values())[1:]  # without self


def _shape(params: list[inspect.Parameter]) -> list[tuple]:
    """What a caller depends on: names, kinds and defaults (annotations are not compared)."""
    return [(p.name, p.kind, p.default) for p in params]


def signature_problem(ours, theirs) -> str | None:
    """Why ``ours`` cannot stand in for ``theirs``, or None when it can.

    Accepted: the same parameters (names, kinds, defaults); a pure pass-through ``(*args, **kwargs)``; or
    ours equal to a prefix of theirs plus ``**kwargs`` that takes the rest, when every parameter of the rest
    is optional and can be given by keyword (TRL passes the image arguments of
    ``_get_per_token_logps_and_entropies`` by keyword).
    """
    mine, base = _params(ours), _params(theirs)
    kinds = [p.kind for p in mine]
    if kinds == [inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD]:
        return None
    if _shape(mine) == _shape(base):
        return None
    if kinds and kinds[-1] == inspect.Parameter.VAR_KEYWORD:
        named = mine[:-1]
        rest = base[len(named) :]
        if _shape(named) == _shape(base[: len(named)]):
            bad = [
                p.name
                for p in rest
                if p.default is inspect.Parameter.empty
                or p.kind not in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            ]
            if not bad:
                return None
            return f"the base's parameters {bad} are required or positional-only; our **{mine[-1].name} cannot take them"
    return "the parameters differ (names, kinds or defaults)"


@pytest.mark.parametrize(
    ("trainer", "owner", "name"), CASES, ids=[f"{owner.__name__}.{name}" for _, owner, name in CASES]
)
def test_override_matches_the_base_method(trainer, owner, name):
    base = library_base(trainer)
    where = f"{owner.__module__}.{owner.__qualname__}.{name}"
    if not hasattr(base, name):
        pytest.fail(
            f"{_library(base)}: {base.__name__}.{name} no longer exists, so {where} is never called and its "
            f"behaviour is silently lost. Find what replaced it in that release, move the override there, "
            f"and update the range in pyproject.toml."
        )
    definer = _defining_class(base, name)
    theirs, ours = getattr(base, name), vars(owner)[name]
    problem = signature_problem(ours, theirs)
    if problem is not None:
        pytest.fail(
            f"{_library(definer)} changed {definer.__name__}.{name}: {problem}.\n"
            f"  {definer.__module__}.{definer.__qualname__}.{name}{inspect.signature(theirs)}\n"
            f"  {where}{inspect.signature(ours)}\n"
            f"Update {owner.__name__}.{name} to the new signature, read what the new base method does (a changed "
            f"signature often means changed behaviour), and set the tested range in pyproject.toml. "
            f"If {name} is a helper of ours that the base now also defines, rename ours."
        )


def test_the_derived_list_holds_the_overrides():
    found = {name for trainer in TRAINERS for _, name in overrides(trainer)}
    assert {"_tokenize_prompts", "_generate_single_turn", "_save", "_load_from_checkpoint"} <= found
    assert all(hasattr(library_base(t), n) for t in TRAINERS for _, n in overrides(t))  # no helper of ours
    assert "__init__" not in found  # dunders are not overrides


def _our_classes() -> list[type]:
    return list(dict.fromkeys(k for t in TRAINERS for k in t.__mro__ if _ours(k)))


def _class_tree(cls: type) -> ast.ClassDef:
    return ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]


def _library_source(trainer: type) -> str:
    """The source of every library module that defines a class in ``trainer``'s MRO."""
    modules = dict.fromkeys(k.__module__ for k in trainer.__mro__ if not _ours(k) and k is not object)
    return "\n".join(inspect.getsource(sys.modules[m]) for m in modules)


def _self_attributes(tree: ast.ClassDef) -> tuple[set[str], set[str]]:
    """Private ``self._x`` names a class reads, and those it assigns."""
    read, assigned = set(), set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            (assigned if isinstance(node.ctx, ast.Store) else read).add(node.attr)
    return read, assigned


@pytest.mark.parametrize("trainer", TRAINERS, ids=lambda t: t.__name__)
def test_private_attributes_we_use_are_the_bases_and_ours_do_not_collide(trainer):
    """``self._tokenizer``, ``self._metrics``, ... must still exist; ``self._frames`` must stay ours alone."""
    base, source = library_base(trainer), _library_source(trainer)
    ours_defined = {name for k in trainer.__mro__ if _ours(k) for name in vars(k)}
    overridden = {name for _, name in overrides(trainer)}
    read, assigned = set(), set()
    for owner in (k for k in trainer.__mro__ if _ours(k)):
        r, a = _self_attributes(_class_tree(owner))
        read |= r
        assigned |= a
    missing = sorted(
        name
        for name in read - assigned - ours_defined
        if not hasattr(base, name) and not re.search(rf"self\.{name}\s*(:[^=\n]*)?=[^=]", source)
    )
    assert not missing, (
        f"{trainer.__name__} reads {missing} from {_library(base)}'s {base.__name__}, which no longer has them "
        f"(neither as class attributes nor assigned in its source): find their replacement in that release."
    )
    helpers = (
        assigned | {n for n in ours_defined if n.startswith("_") and not n.startswith("__")}
    ) - overridden
    clashes = sorted(name for name in helpers if hasattr(base, name) or re.search(rf"self\.{name}\b", source))
    assert not clashes, (
        f"{_library(base)}'s {base.__name__} now uses {clashes}, which {trainer.__name__} also defines for "
        f"itself: one overwrites the other. Rename ours."
    )


def _library_calls(owner: type):
    """``(function, call node)`` for each call in ``owner`` of a function imported from trl/transformers/peft."""
    namespace = vars(sys.modules[owner.__module__])
    for node in ast.walk(_class_tree(owner)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in namespace:
            function = namespace[node.func.id]
            library = getattr(function, "__module__", "") or ""
            if callable(function) and library.split(".")[0] in {"trl", "transformers", "peft"}:
                yield function, node


def test_keywords_we_pass_to_library_functions_exist():
    """E.g. ``unwrap_model_for_generation(..., gradient_checkpointing_kwargs=...)`` needs TRL >= 1.16."""
    problems = []
    for owner in _our_classes():
        for function, call in _library_calls(owner):
            params = inspect.signature(function).parameters
            if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
                continue
            unknown = [k.arg for k in call.keywords if k.arg is not None and k.arg not in params]
            if unknown:
                problems.append(
                    f"{owner.__name__} passes {unknown} to {function.__module__}.{function.__qualname__}"
                    f"{inspect.signature(function)} ({_library(function)})"
                )
    assert not problems, "\n".join(problems)
