"""Fault injection: runs killed (SIGKILL) at chosen points, then rerun, end as an uninterrupted run does.

Each command runs in a subprocess on the tiny model (``save_tiny_model``) and Praat-synthesised speech
(``write_speech_manifest``), with ``EMOLLM_CACHE`` in a temporary folder:

- ``emollm evaluate`` (acoustic strategy: prosody is measured and cached first) is killed while the prosody
  is being measured, then after 6 and after 20 of 32 prediction lines (the last line then also cut in half,
  as a kill inside a ``write()`` leaves it); the last rerun must end with the rows and metrics of an
  uninterrupted run.
- ``emollm sft`` (``ravdess/sft_tokens.yaml``, LoRA + projector, 4 steps, a checkpoint per step) is killed
  from outside once ``checkpoint-2`` is complete, then, from inside (this file run as a script patches the
  process and kills itself), inside a checkpoint save: before emollm's own files, half-way through
  ``optimizer.pt``, just before ``trainer_state.json``, and inside the final save; the last rerun must end at
  global step 4 with the LoRA and projector weights, and the evaluation, of an uninterrupted run (two
  uninterrupted runs are compared first: training is deterministic on CPU).
- the conversion of the built-in model into the cache (``emollm models --convert``, the GGUF loading faked
  with the tiny model as in ``tests/test_failures_models.py``; the real one takes 20-40 s) is killed half-way
  through writing the weights, before the marker, and, with ``--force``, between parking the old entry and
  moving the new one in; the rerun must leave a complete entry whose hashes verify.

Kills from inside are exact; kills from outside poll the files every 5 ms and check afterwards that the run
had not finished yet.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
EMOLLM = str(Path(sys.executable).with_name("emollm"))
TIMEOUT = 240  # seconds for any one command


# -- the helper: this file run as a script, to kill a process from inside at an exact point -----------------


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _patch_sft(point: str) -> None:
    """Kill this process at ``point`` of the first checkpoint save (or of the final save)."""
    import torch
    from transformers import Trainer, TrainerState

    from emollm.training import resume

    if point == "before-emollm-files":  # the LoRA adapter is written, emollm_config/projectors are not
        real_save = resume.save_checkpoint

        def save_checkpoint(model, output_dir, **kw):
            if "checkpoint-" in Path(output_dir).name:
                _die()
            return real_save(model, output_dir, **kw)

        resume.save_checkpoint = save_checkpoint
    elif point == "torn-optimizer":  # optimizer.pt half written, no scheduler/RNG/trainer state
        real_torch_save = torch.save

        def save(obj, f, *a, **kw):
            real_torch_save(obj, f, *a, **kw)
            if isinstance(f, (str, os.PathLike)) and str(f).endswith("optimizer.pt"):
                size = os.path.getsize(f)
                with open(f, "r+b") as handle:
                    handle.truncate(size // 2)
                _die()

        torch.save = save
    elif point == "before-trainer-state":  # everything but trainer_state.json, which Trainer writes last
        real_json = TrainerState.save_to_json

        def save_to_json(self, json_path):
            if "checkpoint-" in json_path:
                _die()
            return real_json(self, json_path)

        TrainerState.save_to_json = save_to_json
    elif point == "final-save":  # the last checkpoint is complete; output_dir's own save is cut
        real_save_model = Trainer.save_model

        def save_model(self, output_dir=None, _internal_call=False):
            if not _internal_call:
                real_save = resume.save_checkpoint

                def cut(model, out, **kw):
                    _die()

                resume.save_checkpoint = cut
                try:
                    return real_save_model(self, output_dir, _internal_call)
                finally:
                    resume.save_checkpoint = real_save
            return real_save_model(self, output_dir, _internal_call)

        Trainer.save_model = save_model
    else:
        raise SystemExit(f"unknown kill point {point!r}")


def _patch_conversion(point: str) -> None:
    """Fake the GGUF conversion with the tiny model; kill this process at ``point`` of writing the cache."""
    sys.path.insert(0, str(HERE.parent))
    from conftest import build_tiny_llama, build_tiny_tokenizer

    from emollm.modeling import base, cache

    gguf = Path(os.environ["FAKE_GGUF"])

    def load(path):
        tokenizer = build_tiny_tokenizer()
        model = build_tiny_llama(len(tokenizer))
        if point == "torn-weights":  # killed while model.safetensors is half written
            real = model.save_pretrained

            def save_pretrained(folder, **kw):
                real(folder, **kw)
                weights = Path(folder) / "model.safetensors"
                weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
                _die()

            model.save_pretrained = save_pretrained
        return model, tokenizer

    base.find_builtin_gguf = lambda name: gguf
    base._load_gguf = load
    if point == "before-marker":  # every file written, the marker not yet
        cache._file_records = lambda folder: _die()
    elif point == "before-swap":  # --force: the old entry is parked, the new one not yet moved in
        real_rename = os.rename

        def rename(src, dst):
            if ".tmp-" in Path(src).name and not Path(dst).name.startswith("."):  # the new entry moving in
                _die()
            return real_rename(src, dst)

        base.os.rename = rename
    elif point not in ("none", "torn-weights"):
        raise SystemExit(f"unknown kill point {point!r}")


def _helper(argv: list[str]) -> int:
    """``python tests/test_fault_injection.py {sft|convert} POINT -- EMOLLM ARGS...``"""
    what, point, dashdash, *args = argv
    assert dashdash == "--"
    (_patch_sft if what == "sft" else _patch_conversion)(point)
    from emollm.cli import main

    return main(args)


if __name__ == "__main__":
    sys.exit(_helper(sys.argv[1:]))


# -- the tests ---------------------------------------------------------------------------------------------

import pytest  # noqa: E402  (the helper above runs without pytest)
import torch  # noqa: E402
from conftest import save_tiny_model, smoke_overrides, write_speech_manifest  # noqa: E402

pytestmark = pytest.mark.faults


def env_for(cache: Path) -> dict:
    env = dict(os.environ)
    env.update({"EMOLLM_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    return env


def run(
    args: list[str], cache: Path, *, helper: tuple[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``emollm ARGS`` (or the helper that kills itself at a point) to its end, however it ends."""
    command = [EMOLLM, *args] if helper is None else [sys.executable, str(HERE), *helper, "--", *args]
    return subprocess.run(command, env=env_for(cache), capture_output=True, text=True, timeout=TIMEOUT)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc


def killed(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == -signal.SIGKILL, f"not killed: exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc


def kill_when(args: list[str], cache: Path, ready, what: str) -> None:
    """Start ``emollm ARGS`` and SIGKILL it as soon as ``ready()`` is true (polled every 5 ms)."""
    with tempfile.TemporaryFile("w+") as stderr:  # a file, not a pipe: a full pipe would stall the run
        proc = subprocess.Popen(
            [EMOLLM, *args],
            env=env_for(cache),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
        deadline = time.monotonic() + TIMEOUT
        try:
            while not ready():
                if proc.poll() is not None:
                    stderr.seek(0)
                    pytest.fail(
                        f"the run ended (exit {proc.returncode}) before {what}:\n{stderr.read()[-3000:]}"
                    )
                if time.monotonic() > deadline:
                    pytest.fail(f"no {what} after {TIMEOUT} s")
                time.sleep(0.005)
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    """The tiny model, 16 synthesised clips and a 32-row manifest of them (each clip twice)."""
    root = tmp_path_factory.mktemp("faults")
    model = save_tiny_model(root / "model")
    speech = write_speech_manifest(root / "speech")
    rows = [json.loads(line) for line in speech.read_text().splitlines()]
    doubled = rows + [{**r, "id": r["id"].replace("u", "v")} for r in rows]
    manifest = speech.parent / "doubled.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in doubled))
    return {"root": root, "model": model, "speech": speech, "doubled": manifest, "n": len(doubled)}


# -- evaluate ----------------------------------------------------------------------------------------------


def read_predictions(out: Path) -> dict:
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    by_id = {r["id"]: r for r in rows}
    assert len(by_id) == len(rows), "an utterance has two rows"
    return by_id


def test_evaluate_killed_three_times_ends_with_the_rows_of_an_uncut_run(material, tmp_path):
    def args(out):
        return ["evaluate", "--data", f"manifest:{material['doubled']}", "--split", "all", "--strategy",
                "acoustic", "--model", str(material["model"]), "--labels", "ravdess8", "--batch-size", "1",
                "--output", str(out), "--no-progress"]  # fmt: skip

    reference = tmp_path / "reference"
    ok(run(args(reference), tmp_path / "cache-reference"))

    out, cache = tmp_path / "cut", tmp_path / "cache"
    predictions = out / "predictions.jsonl"
    # 1. while the prosody of the clips is measured and cached, before any prediction
    kill_when(
        args(out), cache, lambda: len(list(cache.glob("prosody/*/*.json"))) >= 4, "4 cached prosody files"
    )
    assert count_lines(predictions) == 0
    # 2. after 6 predictions
    kill_when(args(out), cache, lambda: count_lines(predictions) >= 6, "6 prediction lines")
    # 3. after 20, and the last line then cut in half (a kill inside write())
    kill_when(args(out), cache, lambda: count_lines(predictions) >= 20, "20 prediction lines")
    done = count_lines(predictions)
    assert 20 <= done < material["n"] and not (out / "metrics.json").exists()
    data = predictions.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    predictions.write_bytes(data[: last + (len(data) - last) // 2])

    rerun = ok(run(args(out), cache))
    assert f"{material['n']} " in rerun.stdout  # the summary table counts every utterance
    expected, got = read_predictions(reference), read_predictions(out)
    assert got.keys() == expected.keys() and len(got) == material["n"]
    different = [i for i in expected if got[i] != expected[i]]
    assert not different, f"rows differ from the uncut run: {different[:5]}"
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics == json.loads((reference / "metrics.json").read_text())["metrics"]


# -- sft ---------------------------------------------------------------------------------------------------


def sft_args(material, out: Path) -> list[str]:
    config = REPO / "recipes" / "configs" / "ravdess" / "sft_tokens.yaml"
    return ["sft", "--config", str(config),
            *smoke_overrides(material["speech"], material["model"], out, max_steps=4)]  # fmt: skip


def weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors = {}
    for name in ("adapter_model.safetensors", "projectors.safetensors"):
        tensors.update({f"{name}:{k}": v for k, v in load_file(str(folder / name)).items()})
    return tensors


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and any(k.startswith("projectors") for k in wa)
    far = [k for k in wa if not torch.allclose(wa[k], wb[k], rtol=0, atol=1e-6)]
    assert not far, f"{len(far)} tensors differ, e.g. {far[:3]}"


def global_step(checkpoint: Path) -> int:
    return json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]


def eval_rows(out: Path) -> dict:
    return read_predictions(out / "eval-dev")


def test_sft_killed_inside_checkpoint_saves_ends_with_the_weights_of_an_uncut_run(material, tmp_path):
    cache = tmp_path / "cache"
    first, second = tmp_path / "uncut-1", tmp_path / "uncut-2"
    ok(run(sft_args(material, first), cache))
    ok(run(sft_args(material, second), cache))
    assert_same_weights(first, second)  # deterministic on CPU: what the comparisons below rely on
    assert_same_weights(first, first / "checkpoint-4")

    out = tmp_path / "cut"
    args = sft_args(material, out)
    # 1. from outside, once checkpoint-2 is complete (Trainer writes trainer_state.json last)
    kill_when(args, cache, lambda: (out / "checkpoint-2" / "trainer_state.json").is_file(), "checkpoint-2")
    assert not (out / "checkpoint-4" / "trainer_state.json").exists(), "killed too late: the run had ended"
    # 2-4. inside the rerun's first checkpoint save, at three points
    for point in ("before-emollm-files", "torn-optimizer", "before-trainer-state"):
        before = {p.name for p in out.glob("checkpoint-*") if (p / "trainer_state.json").is_file()}
        proc = killed(run(args, cache, helper=("sft", point)))
        cut = [p for p in out.glob("checkpoint-*") if not (p / "trainer_state.json").is_file()]
        assert cut, f"{point}: no checkpoint was cut\n{proc.stderr[-2000:]}"
        after = {p.name for p in out.glob("checkpoint-*") if (p / "trainer_state.json").is_file()}
        assert after == before, f"{point}: the complete checkpoints changed: {before} -> {after}"
    # 5. inside the final save into output_dir, after the last checkpoint is complete
    killed(run(args, cache, helper=("sft", "final-save")))
    assert global_step(out / "checkpoint-4") == 4 and not (out / "eval-dev" / "metrics.json").exists()

    rerun = ok(run(args, cache))
    assert "already holds the last step" in rerun.stderr
    assert global_step(out / "checkpoint-4") == 4
    assert_same_weights(out, first)
    assert_same_weights(out / "checkpoint-4", first / "checkpoint-4")
    assert eval_rows(out) == eval_rows(first)
    assert (
        json.loads((out / "eval-dev" / "metrics.json").read_text())["metrics"]
        == json.loads((first / "eval-dev" / "metrics.json").read_text())["metrics"]
    )


# -- the model conversion ----------------------------------------------------------------------------------


def test_a_conversion_killed_midway_leaves_no_entry_and_the_rerun_a_verified_one(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from emollm.modeling import base
    from emollm.modeling.cache import CACHE_ENV

    cache = tmp_path / "cache"
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setenv("FAKE_GGUF", str(gguf))  # read by the helper
    monkeypatch.setenv(CACHE_ENV, str(cache))
    target = base.builtin_cache_path(base.DEFAULT_MODEL)

    def convert(point, *extra):
        return run(["models", "--convert", *extra], cache, helper=("convert", point))

    def leftovers():
        return sorted(p.name for p in target.parent.iterdir() if p != target)

    killed(convert("torn-weights"))
    assert base.check_cache(target) == ("missing", []) and not target.exists()
    assert len(leftovers()) == 1  # the half-written temporary folder
    killed(convert("before-marker"))
    assert base.check_cache(target) == ("missing", []) and not target.exists()
    assert len(leftovers()) == 1  # the first one was removed by the second run, which left its own

    proc = ok(convert("none"))
    assert "(default): cached" in proc.stdout
    assert base.check_cache(target, hashes=True) == ("cached", [])
    assert leftovers() == []
    good = load_file(str(target / "model.safetensors"))

    killed(convert("before-swap", "--force"))
    kinds = sorted(name.removeprefix(f".{target.name}.")[:4] for name in leftovers())
    assert not target.exists() and kinds == ["old-", "tmp-"]  # old entry parked, new one beside it
    proc = ok(run(["models"], cache))  # a plain listing says what is there
    assert "(default): installed, not yet converted" in proc.stdout
    ok(convert("none"))
    assert base.check_cache(target, hashes=True) == ("cached", [])
    assert leftovers() == []
    again = load_file(str(target / "model.safetensors"))
    assert again.keys() == good.keys() and all(torch.equal(again[k], good[k]) for k in good)
