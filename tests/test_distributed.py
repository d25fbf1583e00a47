"""DDP on the CPU: two gloo processes via ``accelerate launch --config_file recipes/accelerate/cpu_2proc.yaml``.

This file is also the training script that the first test launches (``python tests/test_distributed.py OUT``
under accelerate): each rank trains the tiny Llama with LoRA and an ``mlp`` projector on random frames, on
its own shard of the data, then writes its trainable weights to ``OUT/rank<N>.safetensors``. With gradients
all-reduced by DDP the two ranks end with identical weights; without, each rank's weights follow its own
shard and differ.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# run as a script, this file's folder is first on sys.path: conftest's plain builders import as they do here
from conftest import CPU_2PROC, RECIPE, REPO, smoke_overrides

LABELS = ["happy", "sad", "angry", "neutral"]
FRAME_DIM = 22  # the prosody_frames encoder's output size
N_EXAMPLES = 12  # 6 per rank: 3 steps of 2
TIMEOUT = 300


def trainable_state(model) -> dict[str, torch.Tensor]:
    """LoRA and projector weights (everything that requires grad), keyed by name, on the CPU."""
    return {
        n: p.detach().to("cpu").clone().contiguous() for n, p in model.named_parameters() if p.requires_grad
    }


def ddp_train(out: Path, mode: str = "default") -> None:
    """One rank of the DDP run (called under ``accelerate launch``).

    ``mode``: ``default`` (what the recipe gets: find_unused_parameters chosen by the Trainer),
    ``static`` (``ddp_find_unused_parameters=False``), or ``unsynced`` (a control: DDP is told to ignore the
    projector's parameters, so nothing all-reduces their gradients and the ranks must disagree).
    """
    from conftest import build_tiny_llama, build_tiny_tokenizer
    from datasets import Dataset
    from peft import LoraConfig
    from safetensors.torch import save_file
    from trl import SFTConfig

    from emollm.api import EmotionReasoner
    from emollm.data import Utterance
    from emollm.modeling import EmotionLM
    from emollm.modeling.adapters import AdapterSpec
    from emollm.modeling.projectors import build_projector
    from emollm.training import EmotionSFTTrainer, MultimodalCollator, build_examples, prepare_for_training

    tokenizer = build_tiny_tokenizer()
    model = build_tiny_llama(len(tokenizer), seed=0)
    torch.manual_seed(0)  # same initial projector and LoRA weights on both ranks
    projectors = torch.nn.ModuleDict({"audio": build_projector("mlp", FRAME_DIM, 16, num_tokens=3)})
    spec = AdapterSpec("audio", "prosody_frames", "mlp", 3)
    lm = EmotionLM(model, tokenizer, name="tiny", projectors=projectors, adapters=[spec])
    reasoner = EmotionReasoner(lm, labels=LABELS, strategy="minimal", mode="score")

    utterances = [
        Utterance(id=f"u{i:02d}", transcript=["yay", "oh no", "go away", "fine"][i % 4], label=LABELS[i % 4])
        for i in range(N_EXAMPLES)
    ]
    g = torch.Generator().manual_seed(1)
    frames = {u.id: torch.randn(4 + i, FRAME_DIM, generator=g) * (1 + i) for i, u in enumerate(utterances)}
    examples = build_examples(utterances, reasoner.prompts, frames={"audio": frames})
    lora = LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"
    )
    model = prepare_for_training(lm.model, lora)
    initial = trainable_state(model)
    if mode == "unsynced":
        model._ddp_params_and_buffers_to_ignore = [n for n in initial if "emollm_projectors" in n]

    seen: list[str] = []
    collator = MultimodalCollator(tokenizer, lm.num_tokens)

    def recording_collator(batch):
        seen.extend(example["id"] for example in batch)
        return collator(batch)

    args = SFTConfig(
        output_dir=str(out / "trainer"),
        max_steps=3,
        per_device_train_batch_size=2,
        learning_rate=5e-2,
        report_to=[],
        remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True},
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
        seed=0,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False if mode == "static" else None,
    )
    trainer = EmotionSFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(examples),
        data_collator=recording_collator,
        processing_class=tokenizer,
        base_model="tiny",
        adapters=[spec],
        reasoner_settings={"labels": LABELS, "strategy": "minimal"},
    )
    trainer.train()

    rank = trainer.args.process_index
    final = trainable_state(trainer.model)
    save_file(final, str(out / f"rank{rank}.safetensors"))
    save_file(initial, str(out / f"init{rank}.safetensors"))
    report = {
        "rank": rank,
        "world_size": trainer.args.world_size,
        "num_processes": trainer.accelerator.num_processes,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "wrapped": type(trainer.model_wrapped).__name__,
        "seen": seen,
        "global_step": trainer.state.global_step,
    }
    (out / f"rank{rank}.json").write_text(json.dumps(report), encoding="utf-8")


# -- the tests ---------------------------------------------------------------------------------------------


def launch(args: list[str], cache: Path) -> subprocess.CompletedProcess:
    """``accelerate launch`` with the 2-process CPU config; its output goes into the failure message."""
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [str(accelerate), "launch", "--config_file", str(CPU_2PROC), *args]
    env = {
        **os.environ,
        "EMOLLM_CACHE": str(cache),
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",  # CPU + gloo even on a machine with GPUs
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
    }
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, (
        f"exit {result.returncode}\n{result.stdout[-5000:]}\n{result.stderr[-8000:]}"
    )
    return result


def run_ddp(out: Path, mode: str) -> tuple[dict, list[dict], dict]:
    """Launch this file on 2 ranks; the per-rank reports, final trainable weights and rank 0's initial ones."""
    from safetensors.torch import load_file

    out.mkdir()
    launch([str(Path(__file__).resolve()), str(out), mode], out / "cache")
    reports = {r: json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)}
    final = [load_file(str(out / f"rank{r}.safetensors")) for r in (0, 1)]
    for rank, report in reports.items():
        assert report["rank"] == rank
        assert report["world_size"] == 2 and report["num_processes"] == 2, report
        assert (
            report["distributed_type"].endswith("MULTI_CPU")
            and report["wrapped"] == "DistributedDataParallel"
        )
        assert report["global_step"] == 3 and len(report["seen"]) == 6
    # each rank trained on its own shard, so without synchronisation the weights would drift apart
    assert set(reports[0]["seen"]).isdisjoint(reports[1]["seen"])
    initial = [load_file(str(out / f"init{r}.safetensors")) for r in (0, 1)]
    assert all(torch.equal(initial[0][n], initial[1][n]) for n in initial[0])  # same start on both ranks
    assert final[0].keys() == final[1].keys() == initial[0].keys()
    return reports, final, initial[0]


@pytest.mark.parametrize(
    "mode", ["default", pytest.param("static", marks=pytest.mark.slow)], ids=["find_unused", "static"]
)
def test_ddp_synchronises_lora_and_projector_weights(tmp_path, mode):
    _, final, initial = run_ddp(tmp_path / "ddp", mode)
    projector = [n for n in initial if "emollm_projectors" in n]
    lora = [n for n in initial if "lora_" in n]
    assert projector and lora and len(projector) + len(lora) == len(initial)
    different = [n for n in initial if not torch.equal(final[0][n], final[1][n])]
    assert not different, f"weights differ across ranks (gradients not synchronised): {different}"
    moved = {n for n in initial if not torch.equal(final[0][n], initial[n])}
    assert set(projector) <= moved and any(n in moved for n in lora)


@pytest.mark.slow
def test_the_check_fails_when_the_projector_is_not_synchronised(tmp_path):
    """Control: with DDP told to ignore the projector, its weights differ across ranks and LoRA's do not."""
    _, final, initial = run_ddp(tmp_path / "ddp", "unsynced")
    projector = {n for n in initial if "emollm_projectors" in n}
    different = {n for n in initial if not torch.equal(final[0][n], final[1][n])}
    assert different and different <= projector


def test_recipe_runs_under_accelerate(tiny_model_dir, speech_manifest, tmp_path):
    model, manifest = tiny_model_dir, speech_manifest
    out = tmp_path / "run"
    config = REPO / "recipes" / "configs" / "ravdess" / "sft_tokens.yaml"
    overrides = smoke_overrides(manifest, model, out)
    result = launch(
        [str(RECIPE), "--config", str(config), *overrides, "--use_cpu", "true"], tmp_path / "cache"
    )
    for folder in (out / "checkpoint-2", out):
        assert {"emollm_config.json", "projectors.safetensors", "adapter_model.safetensors"} <= {
            p.name for p in folder.iterdir()
        }
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    # 6 training rows, 2 per batch: an epoch is 2 steps on 2 ranks (it would be 3 steps on one)
    assert state["epoch"] == 1.0
    assert result.stderr.count("training on 6 utterances") == 2  # both ranks ran the recipe
    assert (out / "eval-dev" / "metrics.json").is_file()  # rank 0 evaluated
    assert result.stdout.count("| chance |") == 1  # ... and only rank 0 printed the report


if __name__ == "__main__":
    from accelerate import PartialState

    ddp_train(Path(sys.argv[1]), *sys.argv[2:])
    # without this, gloo's threads can abort the interpreter's exit (SIGABRT, "terminate called without
    # an active exception"), as the recipes would (they do the same)
    PartialState().destroy_process_group()
