"""The ``emollm`` command line: ``emollm models``, ``emollm demo``, ``emollm prosody``.

Each subcommand is one function taking the parsed arguments; errors a user can cause are printed as one
line (no traceback) with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from emollm.errors import EmollmError

DEMO_TEXT = "I can't believe you did this to me, after everything I've done for you!"


def _cmd_models(args: argparse.Namespace) -> int:
    from emollm.modeling.base import cache_dir, convert_builtin, list_models

    if args.convert:
        convert_builtin(args.convert)
    rows = list_models()
    if args.json:
        print(json.dumps({"cache_dir": str(cache_dir()), "models": rows}, indent=2))
        return 0
    print(f"cache: {cache_dir()}  (set $EMOLLM_CACHE to move it)")
    for row in rows:
        state = (
            "cached" if row["cached"] else ("installed, not yet converted" if row["installed"] else "missing")
        )
        default = " (default)" if row["default"] else ""
        print(f"  {row['name']}{default}: {state}")
        print(f"      {row['description']}")
        if row["cached"]:
            print(f"      {row['cache_path']} ({row['cache_mb']} MB)")
        if row["install"]:
            print(f"      install with: {row['install']}")
    print("Any local Hugging Face model folder or hub id also works wherever a model name is accepted.")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from emollm.labels import get_label_set
    from emollm.modeling import generate, load_base_model, score_labels
    from emollm.parsing import parse_completion
    from emollm.prompting import render_prompt

    label_set = get_label_set(args.labels)
    start = time.perf_counter()
    model, tokenizer = load_base_model(args.model)
    load_s = time.perf_counter() - start

    fields = {"transcript": args.text, "labels": label_set}
    score_prompt = render_prompt(tokenizer, "minimal", **fields)
    distribution = score_labels(model, tokenizer, [score_prompt], label_set)[0].softmax(-1).tolist()
    ranked = sorted(zip(label_set.labels, distribution), key=lambda kv: -kv[1])
    cot_prompt = render_prompt(tokenizer, "cot", **fields)
    completion = generate(model, tokenizer, [cot_prompt], max_new_tokens=args.max_new_tokens)[0]
    parsed = parse_completion(completion, label_set)
    total_s = time.perf_counter() - start

    result = {
        "model": args.model,
        "text": args.text,
        "label": ranked[0][0],
        "distribution": dict(ranked),
        "rationale": parsed.rationale,
        "generated_label": parsed.label,
        "format_ok": parsed.format_ok,
        "completion": completion,
        "load_seconds": round(load_s, 2),
        "total_seconds": round(total_s, 2),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"model: {args.model} (loaded in {load_s:.1f} s)")
    print(f'utterance: "{args.text}"')
    print(f"label: {result['label']}   (score mode: probability of each label after the 'minimal' prompt)")
    for label, p in ranked:
        print(f"  {label:<10} {p:6.3f} {'#' * round(40 * p)}")
    print("rationale (generate mode, 'cot' prompt):")
    print(f"  {parsed.rationale or '(empty)'}")
    print(f"  generated answer: {parsed.label or 'none parsed'}; format ok: {parsed.format_ok}")
    print(f"done in {total_s:.1f} s")
    return 0


def _cmd_prosody(args: argparse.Namespace) -> int:
    from emollm.prosody.describe import describe
    from emollm.prosody.measure import MeasureConfig
    from emollm.prosody.normalize import ProsodyNormalizer, utterance_relative
    from emollm.prosody.pipeline import extract_prosody

    start = time.perf_counter()
    config = MeasureConfig(pitch_floor=args.pitch_floor, pitch_ceiling=args.pitch_ceiling, gender=args.gender)
    features = extract_prosody(
        args.file, args.transcript, args.textgrid, args.speaker, config=config, on_failure=args.on_failure
    )
    if args.normalizer:
        normalized = ProsodyNormalizer.load(args.normalizer).transform(features, args.speaker)
    else:
        normalized = utterance_relative(features)
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
    print(f"done in {seconds:.2f} s", file=sys.stderr)
    return 0


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``emollm`` command."""
    from emollm.labels import LABEL_SETS
    from emollm.modeling.base import BUILTIN_MODELS, DEFAULT_MODEL

    parser = argparse.ArgumentParser(
        prog="emollm", description="LLM-based emotion recognition and reasoning."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = sub.add_parser("models", help="list built-in models and what is cached")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.add_argument(
        "--convert", choices=sorted(BUILTIN_MODELS), help="convert a built-in model into the cache now"
    )
    models.set_defaults(func=_cmd_models)

    demo = sub.add_parser("demo", help="classify one utterance with the default model, offline")
    demo.add_argument("--text", default=DEMO_TEXT, help="the utterance to classify")
    demo.add_argument("--labels", default="ekman7", choices=sorted(LABEL_SETS), help="label set")
    demo.add_argument("--model", default=DEFAULT_MODEL, help="built-in name, local folder or hub id")
    demo.add_argument("--max-new-tokens", type=int, default=64, help="length of the generated rationale")
    demo.add_argument("--json", action="store_true", help="print JSON")
    demo.set_defaults(func=_cmd_demo)

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
        "--style", default="vowel", choices=["vowel", "utterance", "none"], help="description"
    )
    prosody.add_argument("--max-vowels", type=int, default=3, help="describe at most this many vowels")
    prosody.add_argument("--max-words", type=int, default=80, help="the description's word limit")
    prosody.add_argument(
        "--on-failure",
        default="nuclei",
        choices=["nuclei", "raise"],
        help="when forced alignment fails: fall back to syllable nuclei, or stop with an error",
    )
    prosody.add_argument("--plot", help="write waveform, pitch, intensity and vowel spans to this PNG")
    prosody.add_argument("--json", action="store_true", help="print the description and all measures as JSON")
    prosody.set_defaults(func=_cmd_prosody, quiet=False)
    return parser


def _quiet_libraries() -> None:
    """Hide the per-load progress bars and advice of transformers; emollm prints what matters."""
    import logging

    logging.basicConfig(format="emollm: %(message)s", level=logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``emollm`` console script."""
    args = make_parser().parse_args(argv)
    if getattr(args, "quiet", True):  # commands that load models; prosody never imports transformers
        _quiet_libraries()
    try:
        return args.func(args)
    except EmollmError as exc:
        print(f"emollm {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
