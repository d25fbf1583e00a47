"""Throughput of the prosody pipeline on one CPU core, against openSMILE eGeMAPSv02 functionals.

python benchmarks/prosody_speed.py [--data-root ../shared/data] [--limit 120] [--seed 0] [--profile 0]
    [--out benchmarks/results/prosody_speed.json]

Everything runs in this one process, pinned to one core, with every BLAS/OpenMP pool at one thread (set
before numpy is imported). On the same clips, each timed in turn (the order of the three rotates from clip
to clip, so drift in machine load hits all three alike):

* **full**: ``extract_prosody(path, transcript, speaker=, gender=)`` (decode the FLAC, force-align the
  transcript with pocketsphinx, measure with Praat) then ``describe(features, utterance_relative(features))``
  (no normaliser). ``gender`` is passed as :func:`~emollm.prosody.pipeline.extract_many` does for RAVDESS
  (``--no-gender`` leaves it out: one more pitch pass per clip, to estimate the range).
* **given alignment**: ``measure(audio, alignment, config)`` then ``describe(...)``, where ``audio`` is the
  already decoded clip and ``alignment`` the :class:`~emollm.prosody.alignment.Alignment` pocketsphinx made
  for it in an untimed preparation pass: the cost of a clip whose TextGrid is given, minus decoding the file
  and reading the TextGrid. Decoding (``load_audio``) is timed on its own and reported beside it.
* **openSMILE**: ``Smile(eGeMAPSv02, Functionals).process_file(path)`` (reads and decodes the file too).

One-off start-up (imports, pocketsphinx model and dictionary, Praat, openSMILE's config) is left out of the
throughput and reported as first-call latency. ``--profile N`` also runs cProfile over the full pipeline on
the first N clips and prints the top costs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

# Standard library only (numpy must not be imported before single_core() sets the thread pools)
from _common import spread_subset, write_result

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
METHODS = ("full", "given_alignment", "opensmile")


def single_core(cpu: int | None) -> int | None:
    """One thread per pool (call before numpy is imported) and, where the OS allows it, one CPU."""
    for variable in THREAD_VARIABLES:
        os.environ[variable] = "1"
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[-1] if cpu is None else cpu
    os.sched_setaffinity(0, {chosen})
    return chosen


class Clock:
    """Wall and CPU time of a block, added to running totals."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall.append(time.perf_counter() - self._wall)
        self.cpu.append(time.process_time() - self._cpu)


def short_path(filename: str) -> str:
    for marker in ("site-packages/", "/emollm/"):
        if marker in filename:
            head = "emollm/" if marker == "/emollm/" else ""
            return head + filename.split(marker, 1)[1]
    return filename


def profile(clips: list, run_full, top: int) -> list[dict]:
    """cProfile the full pipeline over ``clips``; the ``top`` functions by own time, with cumulative time."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for u in clips:
        run_full(u)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(v[2] for v in stats.stats.values())  # own times add up to the profiled time
    rows = []
    for (filename, line, name), (_, ncalls, tottime, cumtime, _) in stats.stats.items():
        rows.append(
            {
                "function": f"{short_path(filename)}:{line}:{name}" if line else name,
                "calls": ncalls,
                "own_s": tottime,
                "cumulative_s": cumtime,
                "own_share": tottime / total if total else float("nan"),
            }
        )
    by_own = sorted(rows, key=lambda r: -r["own_s"])[:top]
    by_cum = sorted(rows, key=lambda r: -r["cumulative_s"])[:top]
    return [{"total_s": total, "by_own_time": by_own, "by_cumulative_time": by_cum}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data", help="folder holding ravdess/")
    parser.add_argument("--limit", type=int, default=120, help="clips, spread over actors (0: all 1080)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clip subset")
    parser.add_argument("--cpu", type=int, help="CPU to pin to (default: the last one allowed)")
    parser.add_argument("--no-gender", action="store_true", help="do not pass the speaker's gender")
    parser.add_argument("--profile", type=int, default=0, help="also cProfile the full pipeline on N clips")
    parser.add_argument("--top", type=int, default=25, help="functions listed by --profile")
    parser.add_argument("--out", default="benchmarks/results/prosody_speed.json", help="JSON results")
    args = parser.parse_args()
    cpu = single_core(args.cpu)

    import numpy  # noqa: F401  - imported by both sides: keep it out of either start-up time
    import soundfile  # noqa: F401

    from emollm.data import load_corpus

    clips = spread_subset(load_corpus("ravdess", "all", data_root=args.data_root), args.limit, args.seed)
    if not clips:
        parser.error(f"no RAVDESS clips under {args.data_root}")

    # -- start-up: imports, models, first call -------------------------------------------------------
    first = clips[0]
    startup: dict[str, float] = {}
    start = time.perf_counter()
    from emollm.audio import load_audio
    from emollm.prosody.align import align
    from emollm.prosody.describe import describe
    from emollm.prosody.measure import MeasureConfig, measure
    from emollm.prosody.normalize import utterance_relative
    from emollm.prosody.pipeline import extract_prosody

    startup["ours_import_s"] = time.perf_counter() - start

    def gender_of(u):
        return None if args.no_gender else u.gender

    def run_full(u) -> str:
        features = extract_prosody(u.audio_path, u.transcript, speaker=u.speaker, gender=gender_of(u))
        return describe(features, utterance_relative(features))

    start = time.perf_counter()
    run_full(first)
    startup["ours_first_call_s"] = time.perf_counter() - start

    start = time.perf_counter()
    import opensmile

    startup["opensmile_import_s"] = time.perf_counter() - start
    start = time.perf_counter()
    smile = opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02, feature_level=opensmile.FeatureLevel.Functionals
    )
    startup["opensmile_init_s"] = time.perf_counter() - start
    start = time.perf_counter()
    smile.process_file(first.audio_path)
    startup["opensmile_first_call_s"] = time.perf_counter() - start

    # -- preparation (untimed in the comparison): decode and align every clip once -------------------
    decode, align_only = Clock(), Clock()
    prepared = []
    for u in clips:
        with decode:
            audio = load_audio(u.audio_path)
        with align_only:
            alignment = align(audio, u.transcript)
        prepared.append((audio, alignment))
    audio_s = sum(audio.duration for audio, _ in prepared)

    # -- timed pass: the three methods on each clip, order rotating ----------------------------------
    clocks = {name: Clock() for name in METHODS}
    for index, (u, (audio, alignment)) in enumerate(zip(clips, prepared)):
        config = MeasureConfig(gender=gender_of(u))
        for step in range(3):
            name = METHODS[(index + step) % 3]
            with clocks[name]:
                if name == "full":
                    run_full(u)
                elif name == "given_alignment":
                    features = measure(audio, alignment, config, speaker=u.speaker)
                    describe(features, utterance_relative(features))
                else:
                    smile.process_file(u.audio_path)

    def summary(clock: Clock) -> dict:
        wall, cpu_s = sum(clock.wall), sum(clock.cpu)
        return {
            "files": len(clock.wall),
            "audio_s": audio_s,
            "wall_s": wall,
            "cpu_s": cpu_s,
            "x_realtime": audio_s / wall,
            "x_realtime_cpu": audio_s / cpu_s if cpu_s else float("nan"),
            "median_ms_per_file": 1000 * statistics.median(clock.wall),
        }

    results = {name: summary(clocks[name]) for name in METHODS}
    results["decode_only"] = summary(decode)
    results["align_only"] = summary(align_only)
    ratio = results["full"]["x_realtime"] / results["opensmile"]["x_realtime"]
    ratio_given = results["given_alignment"]["x_realtime"] / results["opensmile"]["x_realtime"]
    methods_used: dict[str, int] = {}
    for _, alignment in prepared:
        methods_used[alignment.method] = methods_used.get(alignment.method, 0) + 1

    titles = {
        "full": "full: extract_prosody (decode + pocketsphinx + Praat) + describe",
        "given_alignment": "alignment given: measure + describe (decoded audio)",
        "opensmile": "openSMILE eGeMAPSv02 functionals, process_file",
        "decode_only": "(part) decode FLAC: load_audio",
        "align_only": "(part) align: pocketsphinx, on decoded audio",
    }
    print(f"{len(clips)} RAVDESS clips, {audio_s:.1f} s of audio, 1 process pinned to CPU {cpu}")
    print()
    print("| pipeline | files | audio s | wall s | x realtime | CPU s | x realtime (CPU) | median ms/file |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, title in titles.items():
        r = results[name]
        print(
            f"| {title} | {r['files']} | {r['audio_s']:.1f} | {r['wall_s']:.2f} | {r['x_realtime']:.1f} | "
            f"{r['cpu_s']:.2f} | {r['x_realtime_cpu']:.1f} | {r['median_ms_per_file']:.1f} |"
        )
    print()
    print(f"full pipeline / openSMILE throughput: {ratio:.2f}x (goal >= 1.5x)")
    print(f"alignment given / openSMILE throughput: {ratio_given:.2f}x")
    print(f"alignment methods in the preparation pass: {methods_used}")
    print()
    print("| start-up (one-off, not in the throughput) | s |")
    print("|---|---:|")
    for key, value in startup.items():
        print(f"| {key} | {value:.3f} |")

    profiled = None
    if args.profile > 0:
        profiled = profile(clips[: args.profile], run_full, args.top)[0]
        print()
        print(
            f"cProfile of the full pipeline on {min(args.profile, len(clips))} clips "
            f"({profiled['total_s']:.2f} s profiled; profiling slows Python code more than C code)"
        )
        for key, title in (("by_own_time", "own time"), ("by_cumulative_time", "cumulative time")):
            print()
            print(f"| top by {title} | calls | own s | cumulative s | own share |")
            print("|---|---:|---:|---:|---:|")
            for row in profiled[key]:
                print(
                    f"| `{row['function']}` | {row['calls']} | {row['own_s']:.3f} | "
                    f"{row['cumulative_s']:.3f} | {100 * row['own_share']:.1f} % |"
                )

    report = {
        "clips": [u.id for u in clips],
        "cpu": cpu,
        "gender_passed": not args.no_gender,
        "results": results,
        "ratio_full_over_opensmile": ratio,
        "ratio_given_alignment_over_opensmile": ratio_given,
        "alignment_methods": methods_used,
        "startup_s": startup,
        "profile": profiled,
        "opensmile_version": opensmile.__version__,
    }
    write_result(args.out, report)


if __name__ == "__main__":
    main()
