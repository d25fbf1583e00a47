"""The ``emollm`` command line: models, demo, prosody, predict, evaluate, faithfulness, compare, sft and grpo.

Each subcommand is one function taking the parsed arguments. :func:`main` is the one place that turns
failures into exit statuses: an error a user can cause (any :class:`~emollm.errors.EmollmError`, and a file
that cannot be written) is one line, ``emollm <command>: error: <message>``, with exit status 2; Ctrl-C is
one line and exit status 130 (``evaluate``, ``sft`` and ``grpo`` resume when rerun); a closed pipe
(``emollm ... | head``) ends quietly. Output paths (``--output``, ``--plot``, ``--save-audio``, a recipe's
``output_dir``) are checked before any long work. ``evaluate``'s options are the fields of
:class:`~emollm.evaluation.harness.EvalConfig` (transformers' ``HfArgumentParser``), ``faithfulness``'s those
of :class:`~emollm.evaluation.faithfulness.FaithfulnessConfig`; ``sft`` and
``grpo`` hand the rest of the command line to the recipes in :mod:`emollm.recipes` (TRL's ``TrlParser``:
``--config`` YAML plus overrides).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import os
import sys
import time
from pathlib import Path

from emollm.errors import ConfigError, EmollmError

DEMO_TEXT = "I can't believe you did this to me, after everything I've done for you!"
DEMO_PITCH = 1.5  # Praat pitch multiplier: about +5.5 semitones, a raised voice
DEMO_RATE = 210  # words per minute, faster than the synthesiser's 175

RESUMABLE = ("evaluate", "faithfulness", "sft", "grpo", "timeline")
"""Commands that continue where they stopped when rerun (an interrupted run says so)."""

_WRITE_ERRNOS = (
    "EACCES",
    "EPERM",
    "EROFS",
    "ENOSPC",
    "EDQUOT",
    "EEXIST",
    "ENOTDIR",
    "EISDIR",
    "ENAMETOOLONG",
    "ENOENT",  # a path that cannot be made (e.g. under /proc), or a file gone missing: named in the message
)
WRITE_ERRORS = {getattr(errno, name) for name in _WRITE_ERRNOS if hasattr(errno, name)}
"""``OSError`` numbers shown as a one-line error: what a path or a full disk causes, not a bug."""


def check_output_path(path: str | os.PathLike, flag: str, *, folder: bool = False, suffixes=()) -> Path:
    """Refuse, before any work, an output that cannot be written; returns it as a :class:`~pathlib.Path`.

    A file is refused when it is an existing folder, has a suffix outside ``suffixes`` (when given) or is
    read-only; a folder when a file is in its place. Either way the nearest existing folder above must be
    writable (missing folders are created later) and not a file.

    Raises:
        ConfigError: naming ``flag``, the path and what is wrong.

    >>> check_output_path("/", "--plot")
    Traceback (most recent call last):
    ...
    emollm.errors.ConfigError: --plot '/' is a folder; give a file name (e.g. '/out')
    """
    path = Path(path).expanduser()
    if not folder and path.is_dir():
        example = path / f"out{suffixes[0] if suffixes else ''}"
        raise ConfigError(f"{flag} {str(path)!r} is a folder; give a file name (e.g. {str(example)!r})")
    if not folder and suffixes and path.suffix.lower() not in suffixes:
        raise ConfigError(f"{flag} {str(path)!r} must end in {', '.join(suffixes)}")
    if folder and path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {str(path)!r} is a file; give a folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{flag} {str(path)!r} is not writable")
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{flag} {str(path)!r} cannot be made: {str(existing)!r} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{flag} {str(path)!r} cannot be written: the folder {str(existing)!r} is not writable"
        )
    return path


def _check_max_new_tokens(value: int | None) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"--max-new-tokens must be >= 1, got {value} (leave it out for the default)")


def _convertible_model(value: str) -> str:
    from emollm.modeling.base import BUILTIN_MODELS, is_gguf_path

    if value in BUILTIN_MODELS or is_gguf_path(value):
        return value
    names = ", ".join(map(repr, sorted(BUILTIN_MODELS)))
    raise argparse.ArgumentTypeError(f"invalid choice: {value!r} (choose from {names} or a .gguf file)")


def _cmd_models(args: argparse.Namespace) -> int:
    from emollm.modeling.base import cache_dir, check_cache, convert_model, list_models, model_cache_path

    root = cache_dir()  # $EMOLLM_CACHE naming a file fails here, before any conversion
    if args.force and not args.convert:
        raise ConfigError("--force rebuilds a cache entry and needs --convert [NAME]")
    if args.convert:
        state, problems = check_cache(model_cache_path(args.convert))
        if state == "damaged" and not args.force:
            print(f"rebuilding the damaged cache of {args.convert}: {'; '.join(problems)}", file=sys.stderr)
        convert_model(args.convert, force=args.force or state == "damaged")
    rows = list_models()
    if args.json:
        print(json.dumps({"cache_dir": str(root), "models": rows}, indent=2))
        return 0
    print(f"cache: {root}  (set $EMOLLM_CACHE to move it)")
    for row in rows:
        state = {
            "cached": "cached",
            "unverified": "cached (unverified: written by an older emollm, without checksums)",
            "damaged": "damaged",
            "missing": "installed, not yet converted" if row["installed"] else "missing",
        }[row["state"]]
        default = " (default)" if row["default"] else ""
        print(f"  {row['name']}{default}: {state}")
        print(f"      {row['description']}")
        if row["state"] != "missing":
            print(f"      {row['cache_path']} ({row['cache_mb']} MB)")
        for problem in row["problems"]:
            print(f"      {problem}")
        if row["repair"]:
            print(f"      rebuild with: {row['repair']}")
        if row["install"]:
            print(f"      install with: {row['install']}")
    print("Any .gguf file, Hugging Face model folder or hub id also works wherever a model name is accepted.")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from emollm.api import EmotionReasoner
    from emollm.prosody.synth import synthesize

    _check_max_new_tokens(args.max_new_tokens)
    if args.save_audio:  # before the run, whose result would otherwise be lost
        check_output_path(args.save_audio, "--save-audio", suffixes=(".wav", ".flac", ".ogg"))
    start = time.perf_counter()
    audio, _ = synthesize(args.text, pitch=args.pitch, words_per_minute=args.rate)
    if args.save_audio:
        from emollm.audio import save_audio

        save_audio(audio, args.save_audio)
    reasoner = EmotionReasoner.from_pretrained(
        args.model, labels=args.labels, strategy="acoustic", max_new_tokens=args.max_new_tokens
    )
    load_s = time.perf_counter() - start
    # The synthesiser's own alignment is not used: the utterance goes through forced alignment like a
    # recording would.
    prediction = reasoner.predict(audio=audio, transcript=args.text)
    total_s = time.perf_counter() - start
    result = {
        "model": args.model,
        "text": args.text,
        "synthesis": {
            "pitch": args.pitch,
            "words_per_minute": args.rate,
            "seconds": round(audio.duration, 2),
        },
        **prediction.to_dict(),
        "load_seconds": round(load_s, 2),
        "total_seconds": round(total_s, 2),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"model: {args.model} (ready in {load_s:.1f} s)")
    print(
        f'speech: "{args.text}", synthesised by Praat at pitch x{args.pitch}, {args.rate} words/min '
        f"({audio.duration:.1f} s)"
    )
    print(prediction.to_text())
    print(f"done in {total_s:.1f} s")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from emollm.api import EmotionReasoner
    from emollm.asr import check_backend

    if args.file is None and not (args.transcript or "").strip():
        raise ConfigError("give an audio FILE, a --transcript, or both")
    if check_backend(args.asr):
        raise ConfigError(f"--asr: {check_backend(args.asr)}")
    _check_max_new_tokens(args.max_new_tokens)
    if args.calibrate and args.mode == "generate":
        raise ConfigError(
            "--calibrate adjusts the label distribution, which --mode generate does not compute; use --mode "
            "score or both, or leave out --calibrate"
        )
    if args.file is not None:  # unreadable audio fails before the model loads
        from emollm.audio import load_audio

        load_audio(args.file)
    context = []
    for turn in args.context or []:
        speaker, sep, text = turn.partition(":")
        if not sep or not text.strip():
            raise ConfigError(f'--context takes "SPEAKER: text", got {turn!r}')
        context.append((speaker.strip(), text.strip()))
    given = {
        "labels": args.labels,
        "strategy": args.strategy,
        "mode": args.mode,
        "prosody": args.prosody,
        "normalizer": args.normalizer,
        "max_new_tokens": args.max_new_tokens,
        "calibrate": args.calibrate,
    }
    # Unset options keep the defaults, or a trained checkpoint's own settings (label set, strategy...).
    reasoner = EmotionReasoner.from_pretrained(
        args.model, **{k: v for k, v in given.items() if v is not None}
    )
    extra = {"gender": args.gender} if args.gender else {}
    transcript = args.transcript if (args.transcript or "").strip() else None  # "" means none
    prediction = reasoner.predict(args.file, transcript, context, args.speaker, asr=args.asr, **extra)
    if args.json:
        print(json.dumps(prediction.to_dict(), indent=2))
    else:
        print(prediction.to_text())
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from emollm.evaluation.harness import EvalConfig, evaluate
    from emollm.evaluation.metrics import summary_markdown

    fields = [f for f in dataclasses.fields(EvalConfig) if f.init]
    config = EvalConfig(**{f.name: getattr(args, f.name) for f in fields})  # checks
    if config.from_checkpoint:  # options left out, filled in from the checkpoint: say which and how
        taken = ", ".join(f"{name} {getattr(config, name)!r}" for name in config.from_checkpoint)
        print(f"as the checkpoint was trained: {taken} (options given win)", file=sys.stderr)
    result = evaluate(config, overwrite=args.overwrite, progress=not args.no_progress)
    if result.predicted == 0:
        print(f"nothing to predict: {result.output_dir} already holds all {result.summary['n']} predictions")
    print(summary_markdown({"model": result.metrics, **result.baselines}))
    if result.summary["format_ok_rate"] is not None:
        print(f"format ok: {100 * result.summary['format_ok_rate']:.1f}% of completions")
    print(f"wrote {result.output_dir}/: metrics.json, report.md, confusion.png, predictions.jsonl")
    return 0


def _cmd_faithfulness(args: argparse.Namespace) -> int:
    from emollm.evaluation.faithfulness import FaithfulnessConfig, faithfulness

    fields = dataclasses.fields(FaithfulnessConfig)
    config = FaithfulnessConfig(**{f.name: getattr(args, f.name) for f in fields})  # checks
    result = faithfulness(config, overwrite=args.overwrite, progress=not args.no_progress)
    s = result.summary
    if result.predicted == 0:
        print(f"nothing to predict: {result.output_dir} already holds all {s['n_pairs']} pairs")
    report = (result.output_dir / "report.md").read_text(encoding="utf-8")
    print(report.split("\nSettings:")[0].strip())  # the scores, without the settings block
    print(f"wrote {result.output_dir}/: metrics.json, report.md, predictions.jsonl")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from emollm.evaluation.bootstrap import compare_runs, comparison_markdown

    comparison = compare_runs(
        args.run_a, args.run_b, n_resamples=args.resamples, level=args.level, seed=args.seed
    )
    print(json.dumps(comparison, indent=2) if args.json else comparison_markdown(comparison))
    return 0


def _cmd_prosody(args: argparse.Namespace) -> int:
    from emollm.prosody.describe import describe
    from emollm.prosody.measure import MeasureConfig
    from emollm.prosody.normalize import normalize_features
    from emollm.prosody.pipeline import extract_prosody
    from emollm.prosody.pronunciation import tokenize

    start = time.perf_counter()
    if args.plot:
        check_output_path(args.plot, "--plot", suffixes=(".png", ".pdf", ".svg"))
    if args.textgrid_out:
        check_output_path(args.textgrid_out, "--textgrid-out", suffixes=(".textgrid",))
    transcript = args.transcript
    if transcript is not None and not transcript.strip():
        raise ConfigError("--transcript is empty; leave it out to find syllable nuclei without a transcript")
    # the aligner knows English only: a transcript in another script falls back to nuclei, as a failed
    # alignment does
    foreign = transcript is not None and args.textgrid is None and not tokenize(transcript)[0]
    if foreign and args.on_failure == "raise":
        raise ConfigError(
            f"--transcript {transcript!r} has no English words to align (the aligner knows English only); "
            "leave out --transcript, or use --on-failure nuclei, to find syllable nuclei instead"
        )
    config = MeasureConfig(pitch_floor=args.pitch_floor, pitch_ceiling=args.pitch_ceiling, gender=args.gender)
    features = extract_prosody(
        args.file,
        None if foreign else transcript,
        args.textgrid,
        args.speaker,
        config=config,
        on_failure=args.on_failure,
    )
    if foreign:
        features.alignment.transcript = transcript
        features.notes = [
            f"the transcript has no English words to align ({', '.join(tokenize(transcript)[1][:5])}); fell "
            "back to syllable nuclei",
            *(note for note in features.notes if note != "no transcript"),
        ]
    normalized = normalize_features(features, args.normalizer, args.speaker)  # for its reference in --json
    text = describe(
        features, normalized, style=args.style, max_vowels=args.max_vowels, max_words=args.max_words
    )
    if args.plot:
        from emollm.audio import load_audio
        from emollm.prosody.plot import plot_prosody

        plot_prosody(
            load_audio(args.file),
            features.alignment,
            args.plot,
            pitch_floor=features.utterance.pitch_floor,
            pitch_ceiling=features.utterance.pitch_ceiling,
        )
    if args.textgrid_out:
        from emollm.timeline import write_prosody_textgrid

        write_prosody_textgrid(features, args.textgrid_out)
    seconds = time.perf_counter() - start
    if args.json:
        out = {
            "description": text,
            "reference": normalized.reference,
            "features": json.loads(features.to_json()),
        }
        print(json.dumps(out, indent=2))
        return 0
    al = features.alignment
    print(f"{args.file}: {features.utterance.duration:.2f} s, {len(features.vowels)} vowels ({al.method})")
    for note in features.notes:
        print(f"  note: {note}")
    print(text)
    if args.plot:
        print(f"plot: {args.plot}")
    if args.textgrid_out:
        print(f"TextGrid: {args.textgrid_out}")
    print(f"done in {seconds:.2f} s", file=sys.stderr)
    return 0


def _cmd_timeline(args: argparse.Namespace) -> int:
    from emollm.timeline import run_timeline

    check_output_path(args.output, "--output", folder=True)
    settings = {k: v for k, v in (("labels", args.labels), ("mode", args.mode)) if v is not None}
    result = run_timeline(
        args.file,
        args.output,
        model=args.model,
        asr=args.asr,
        min_silence=args.min_silence,
        context=args.context,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        **settings,
    )
    counts = {}
    for row in result.segments:
        counts[row["label"]] = counts.get(row["label"], 0) + 1
    found = ", ".join(f"{label} {n}" for label, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    print(f"{len(result.segments)} segments in {result.duration:.1f} s" + (f": {found}" if found else ""))
    if result.predicted < len(result.segments):
        print(f"resumed: {len(result.segments) - result.predicted} segments were already done")
    written = "segments.jsonl, segments.csv, timeline.png, timeline.TextGrid, summary.json"
    print(f"wrote {result.output_dir}/: {written}")
    return 0


RECIPES = {"sft": "emollm.recipes.sft", "grpo": "emollm.recipes.grpo"}
"""Subcommands that run a training recipe. As ``trl sft`` does (TRL 1.16's ``TrainingCommand``), the command
is registered without options and the rest of the command line goes to the recipe's own ``make_parser`` (a
``TrlParser``: ``--config`` YAML plus overrides), so ``emollm --help`` does not import TRL."""


def evaluate_parser(prog: str = "emollm evaluate", config_class=None, description: str | None = None):
    """The options of ``emollm evaluate``: :class:`~emollm.evaluation.harness.EvalConfig`'s fields.

    Built on its own (transformers' ``HfArgumentParser``), so the other commands do not import transformers.
    ``emollm faithfulness`` builds its own the same way, from ``config_class``
    (:class:`~emollm.evaluation.faithfulness.FaithfulnessConfig`).
    """
    from transformers.hf_argparser import HfArgumentParser

    from emollm.evaluation.harness import EvalConfig

    parser = HfArgumentParser(
        [config_class or EvalConfig],
        prog=prog,
        description=description or "Zero-shot (or checkpoint) evaluation over a corpus split; resumable.",
    )
    parser.add_argument(
        "--no-prosody",
        "--no_prosody",
        dest="prosody",
        action="store_false",
        help="no description in the prompt",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="discard the output folder's predictions and start again"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _delegated(command: str, argv: list[str]) -> int:
    """Run a command whose options another parser reads: ``evaluate``, ``faithfulness``, ``sft``, ``grpo``."""
    if command == "evaluate":
        _quiet_libraries()
        return _cmd_evaluate(evaluate_parser().parse_args(argv))
    if command == "faithfulness":
        from emollm.evaluation.faithfulness import FaithfulnessConfig

        _quiet_libraries()
        parser = evaluate_parser(
            "emollm faithfulness",
            FaithfulnessConfig,
            "Counterfactual swap of voice inputs between utterances of different labels; resumable.",
        )
        return _cmd_faithfulness(parser.parse_args(argv))
    import importlib

    from emollm.training.arguments import parse_recipe_args

    # the recipe module's cli(), with its output folder checked before any data or model loads
    recipe = importlib.import_module(RECIPES[command])
    parsed = parse_recipe_args(recipe.make_parser(f"emollm {command}"), argv)
    if parsed[1].output_dir:
        check_output_path(parsed[1].output_dir, "--output_dir", folder=True)
    recipe.main(*parsed)
    from accelerate import PartialState

    PartialState().destroy_process_group()  # a clean exit under accelerate launch (emollm.recipes.sft.cli)
    return 0


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``emollm`` command.

    ``evaluate``, ``sft`` and ``grpo`` read their options with parsers of their own (:func:`evaluate_parser`,
    the recipes' ``make_parser``); here they are only listed.
    """
    from emollm.labels import LABEL_SETS
    from emollm.modeling.base import DEFAULT_MODEL

    parser = argparse.ArgumentParser(
        prog="emollm", description="LLM-based emotion recognition and reasoning."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = sub.add_parser("models", help="list built-in models and what is cached")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.add_argument(
        "--convert",
        nargs="?",
        const=DEFAULT_MODEL,
        type=_convertible_model,
        metavar="NAME",
        help=f"convert a built-in model or a .gguf file into the cache now (default {DEFAULT_MODEL}); a "
        "damaged entry is rebuilt",
    )
    models.add_argument(
        "--force",
        action="store_true",
        help="with --convert: convert again even if the cache entry looks intact (the old one stays until "
        "the new one is complete)",
    )
    models.set_defaults(func=_cmd_models)

    demo = sub.add_parser(
        "demo",
        help="synthesise one utterance, describe its prosody and classify it with the default model, offline",
    )
    demo.add_argument("--text", default=DEMO_TEXT, help="what the synthesiser says")
    demo.add_argument("--pitch", type=float, default=DEMO_PITCH, help="synthesiser pitch multiplier, 0.5-2")
    demo.add_argument("--rate", type=int, default=DEMO_RATE, help="synthesiser words per minute, 80-450")
    demo.add_argument("--labels", default="ekman7", choices=sorted(LABEL_SETS), help="label set")
    demo.add_argument("--model", default=DEFAULT_MODEL, help="built-in name, local folder or hub id")
    demo.add_argument("--max-new-tokens", type=int, default=96, help="length of the generated rationale")
    demo.add_argument("--save-audio", help="also write the synthesised speech to this .wav file")
    demo.add_argument("--json", action="store_true", help="print JSON")
    demo.set_defaults(func=_cmd_demo)

    predict = sub.add_parser("predict", help="label, distribution and rationale for one utterance")
    predict.add_argument("file", nargs="?", help="audio file; leave out for text only")
    predict.add_argument("--transcript", help="what is said (without it, it is recognised from the audio)")
    predict.add_argument(
        "--asr",
        default="pocketsphinx",
        metavar="BACKEND",
        help="speech recognition when there is no --transcript: pocketsphinx (default, offline), hf:PATH "
        "(a transformers ASR model folder or hub id, e.g. Whisper) or none (no transcript: the prompt says "
        "it is unknown and prosody comes from syllable nuclei)",
    )
    predict.add_argument(
        "--context", action="append", metavar='"SPEAKER: text"', help="an earlier turn (repeat, oldest first)"
    )
    predict.add_argument("--speaker", help="who is speaking")
    predict.add_argument("--gender", choices=["male", "female"], help="pitch range preset for the prosody")
    predict.add_argument(
        "--labels", help=f"label set (default ravdess8 or the checkpoint's): {', '.join(sorted(LABEL_SETS))}"
    )
    predict.add_argument(
        "--strategy", help="minimal, acoustic, cot or a .jinja path (default acoustic or the checkpoint's)"
    )
    predict.add_argument(
        "--mode", choices=["score", "generate", "both"], help="decoding (default both, or the checkpoint's)"
    )
    predict.add_argument(
        "--prosody",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="describe the voice in the prompt (default: on for acoustic only)",
    )
    predict.add_argument("--normalizer", help="JSON of a fitted ProsodyNormalizer (speaker statistics)")
    predict.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="calibrate the distribution against a content-free input (default: off, or a checkpoint's own)",
    )
    predict.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="built-in name, local folder, hub id or an SFT checkpoint folder",
    )
    predict.add_argument("--max-new-tokens", type=int, help="generation length (default 16 or 128)")
    predict.add_argument("--json", action="store_true", help="print JSON")
    predict.set_defaults(func=_cmd_predict)

    sub.add_parser(
        "evaluate",
        help="zero-shot (or checkpoint) evaluation over a corpus split; resumable (--help: its options)",
        add_help=False,
    )

    sub.add_parser(
        "faithfulness",
        help="does the model use the voice? swap voice inputs between utterances of different labels "
        "(--help: its options)",
        add_help=False,
    )

    compare = sub.add_parser(
        "compare", help="paired bootstrap of two evaluation folders: B - A per metric, interval, p-value"
    )
    compare.add_argument("run_a", help="evaluation folder A (e.g. before GRPO)")
    compare.add_argument("run_b", help="evaluation folder B, same utterances (e.g. after GRPO)")
    compare.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    compare.add_argument("--level", type=float, default=0.95, help="interval coverage (default 0.95)")
    compare.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    compare.add_argument("--json", action="store_true", help="print JSON")
    compare.set_defaults(func=_cmd_compare)

    prosody = sub.add_parser(
        "prosody", help="align, measure and describe the prosody of one audio file (vowel by vowel)"
    )
    prosody.add_argument("file", help="audio file (any format soundfile or librosa reads)")
    prosody.add_argument("--transcript", help="what is said; without it, syllable nuclei stand in for vowels")
    prosody.add_argument(
        "--textgrid", help="TextGrid with word and phone tiers (e.g. from MFA), trusted as is"
    )
    prosody.add_argument("--speaker", help="speaker id, to use that speaker's statistics in --normalizer")
    prosody.add_argument("--gender", choices=["male", "female"], help="pitch range preset")
    prosody.add_argument("--pitch-floor", type=float, help="pitch floor in Hz (default: adaptive)")
    prosody.add_argument("--pitch-ceiling", type=float, help="pitch ceiling in Hz (default: adaptive)")
    prosody.add_argument(
        "--normalizer", help="JSON of a fitted ProsodyNormalizer (speaker/corpus statistics)"
    )
    prosody.add_argument(
        "--style", default="vowel", choices=["vowel", "utterance", "measures", "none"], help="description"
    )
    prosody.add_argument(
        "--max-vowels",
        type=int,
        help="describe at most this many vowels (default: the style's, 3; measures 20)",
    )
    prosody.add_argument(
        "--max-words", type=int, help="the description's word limit (default: the style's, 80; measures 200)"
    )
    prosody.add_argument(
        "--on-failure",
        default="nuclei",
        choices=["nuclei", "raise"],
        help="when forced alignment fails: fall back to syllable nuclei, or stop with an error",
    )
    prosody.add_argument("--plot", help="write waveform, pitch, intensity and vowel spans to this PNG")
    prosody.add_argument(
        "--textgrid-out", help="write words, phones and vowels tiers to this Praat .TextGrid file"
    )
    prosody.add_argument("--json", action="store_true", help="print the description and all measures as JSON")
    prosody.set_defaults(func=_cmd_prosody, quiet=False)

    timeline = sub.add_parser(
        "timeline",
        help="long recording: find the speech, then transcript, prosody and label per segment; resumable",
    )
    timeline.add_argument("file", help="recording (WAV, FLAC, OGG or MP3; read in blocks, any length)")
    timeline.add_argument(
        "--output", required=True, help="output folder (segments.jsonl, .csv, .png, .TextGrid)"
    )
    timeline.add_argument(
        "--asr", default="pocketsphinx", help="speech recognition: pocketsphinx, hf:<path> or none"
    )
    timeline.add_argument(
        "--model", help=f"built-in name, local folder or checkpoint (default {DEFAULT_MODEL})"
    )
    timeline.add_argument("--labels", help=f"label set (default ravdess8): {', '.join(sorted(LABEL_SETS))}")
    timeline.add_argument("--mode", choices=["score", "generate", "both"], help="decoding (default both)")
    timeline.add_argument(
        "--min-silence",
        type=float,
        default=0.3,
        help="pauses shorter than this (s) do not split (default 0.3)",
    )
    timeline.add_argument(
        "--context", type=int, default=0, help="show the transcripts of the N previous segments (default 0)"
    )
    timeline.add_argument(
        "--overwrite", action="store_true", help="discard the output folder and start again"
    )
    timeline.add_argument("--no-progress", action="store_true", help="no progress bars")
    timeline.set_defaults(func=_cmd_timeline)

    for name, what in (("sft", "supervised fine-tuning"), ("grpo", "GRPO with verifiable rewards")):
        sub.add_parser(
            name,
            help=f"run the {what} recipe: --config YAML plus overrides (emollm {name} --help lists them)",
            add_help=False,
        )
    return parser


def _quiet_libraries() -> None:
    """Hide the per-load progress bars and advice of transformers; emollm prints what matters."""
    import logging

    logging.basicConfig(format="emollm: %(message)s", level=logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _run(argv: list[str]) -> int:
    if argv and (argv[0] in RECIPES or argv[0] in ("evaluate", "faithfulness")):  # their own parsers
        return _delegated(argv[0], argv[1:])
    args = make_parser().parse_args(argv)
    if getattr(args, "quiet", True):  # commands that load models; prosody never imports transformers
        _quiet_libraries()
    return args.func(args)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``emollm`` console script; returns the exit status.

    0 on success; 2 with one line ``emollm <command>: error: <message>`` on stderr for an
    :class:`~emollm.errors.EmollmError` or an output that cannot be written (argparse's own usage errors
    are 2 too); 130 after Ctrl-C; 1, silently, when stdout is a pipe closed early (``emollm ... | head``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    command = f"emollm {argv[0]}" if argv and not argv[0].startswith("-") else "emollm"
    try:
        status = _run(argv)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return status
    except EmollmError as exc:
        print(f"{command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The Python documentation's recipe (signal module, "Note on SIGPIPE"): point stdout at devnull so
        # the flush at exit does not fail again, and exit quietly.
        with contextlib.suppress(OSError, ValueError, AttributeError):  # a replaced sys.stdout has no fd
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        resumable = argv and argv[0] in RESUMABLE
        print(
            f"\n{command}: interrupted" + ("; rerun the same command to resume" if resumable else ""),
            file=sys.stderr,
        )
        return 130
    except OSError as exc:
        if exc.errno not in WRITE_ERRORS:
            raise
        where = f": {exc.filename!r}" if exc.filename else ""
        print(f"{command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
