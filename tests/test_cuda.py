"""CUDA paths (marked gpu, skipped without CUDA): scores and greedy text on CUDA against the CPU's, TRL's
fused LM head under pseudo-tokens against a plain-head reference, and a bf16 GRPO step that trains only the
LoRA and the projector."""

import pytest
import torch
from test_grpo import grpo_trainer, moved, snapshot
from test_lm import sharpen
from test_sft import FRAME_DIM, LABELS, frames, make_lm

from emollm.modeling.adapters import build_inputs_embeds
from emollm.modeling.injection import PSEUDO_TOKEN_ID

pytestmark = pytest.mark.gpu
TOLERANCE = 2e-4  # log-probability, absolute: float32 on CUDA vs CPU


def scores_and_text(lm, device):
    """Two prompts alike but for their frames (CPU tensors: the lm moves them), scored and decoded greedily."""
    lm.model.to(device)
    prompt = "<|im_start|>user\nhow does this sound? <|audio|><|im_end|>\n<|im_start|>assistant\n"
    features = [{"audio": frames()["u0"]}, {"audio": frames()["u3"]}]
    scores = lm.score([prompt, prompt], LABELS, frames=features).cpu()
    return scores, lm.generate([prompt, prompt], frames=features, max_new_tokens=6)


def test_scores_and_greedy_text_on_cuda_equal_cpu(tiny_tokenizer):
    lm = make_lm(tiny_tokenizer, projector="mlp")
    sharpen(lm.model)  # the tiny model attends almost uniformly; sharpened, the frames move the scores more
    cpu_scores, cpu_text = scores_and_text(lm, "cpu")
    assert (cpu_scores[0] - cpu_scores[1]).abs().max() > 10 * TOLERANCE  # the frames matter beyond it
    cuda_scores, cuda_text = scores_and_text(lm, "cuda")
    torch.testing.assert_close(cuda_scores, cpu_scores, atol=TOLERANCE, rtol=0)
    assert cuda_text == cpu_text  # weak: the tiny model's greedy text hardly depends on its input


def plain_head_logps(trainer, ids, mask, k):
    """Per-token log-probs and entropies of the last ``k`` tokens from the model's own logits (no fused head)."""
    model = trainer.model
    text_mask = mask.bool() & (ids != PSEUDO_TOKEN_ID)
    text_mask[:, ids.size(1) - k :] = False
    embeds = build_inputs_embeds(model, ids, trainer._frames_of(slice(None)), text_mask)
    logits = model(inputs_embeds=embeds, attention_mask=mask).logits[:, -(k + 1) : -1].float()
    logps = (logits / trainer.temperature).log_softmax(-1)
    entropy = -(logps.exp() * logps).sum(-1)
    return logps.gather(-1, ids[:, -k:, None]).squeeze(-1), entropy


def test_the_fused_lm_head_under_pseudo_tokens_equals_the_plain_head(tiny_tokenizer, tmp_path):
    lm = make_lm(tiny_tokenizer, projector="mlp")
    trainer = grpo_trainer(lm, tiny_tokenizer, tmp_path, use_cpu=False, temperature=0.7)
    assert next(trainer.model.parameters()).device.type == "cuda"
    prompt = tiny_tokenizer("<|im_start|>user\nhear: ")["input_ids"] + [PSEUDO_TOKEN_ID] * 3
    ids = torch.tensor([[0, *prompt, 5, 6, 7], [*prompt, 8, 9, 10, 11]], device="cuda")
    mask = torch.ones_like(ids)
    mask[0, 0] = 0  # left padding
    g = torch.Generator().manual_seed(1)
    trainer._frames = {
        "audio_frames": torch.randn(2, 4, FRAME_DIM, generator=g).cuda(),
        "audio_mask": torch.ones(2, 4, dtype=torch.bool, device="cuda"),
    }
    with torch.no_grad():
        fused, entropy, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, mask, 3, compute_entropy=True
        )
        plain, plain_entropy = plain_head_logps(trainer, ids, mask, 3)
    torch.testing.assert_close(fused, plain, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(entropy, plain_entropy, atol=1e-4, rtol=1e-4)
    trainer._frames["audio_frames"][1] = torch.randn(4, FRAME_DIM, generator=g).cuda()  # row 1 only
    with torch.no_grad():
        other = trainer._get_per_token_logps_and_entropies(trainer.model, ids, mask, 3)[0]
    assert torch.equal(other[0], fused[0]) and not torch.allclose(other[1], fused[1])


def test_one_bf16_grpo_step_on_cuda_moves_lora_and_projector_only(tiny_tokenizer, tmp_path):
    lm = make_lm(tiny_tokenizer, projector="mlp")
    trainer = grpo_trainer(lm, tiny_tokenizer, tmp_path, use_cpu=False, bf16=True)
    assert next(trainer.model.parameters()).device.type == "cuda"
    assert trainer.accelerator.mixed_precision == "bf16"
    before = snapshot(trainer.model)
    trainer.train()
    changed = moved(before, trainer.model)
    assert any("lora_B" in n for n in changed) and any("emollm_projectors" in n for n in changed)
    assert all("lora_" in n or "emollm_projectors" in n for n in changed), changed
    assert torch.isfinite(torch.tensor(trainer.state.log_history[0]["loss"]))
