"""QLoRA: a 4-bit base model (bitsandbytes NF4) with LoRA and a projector trains and restores (needs CUDA)."""

import pytest
import torch
from conftest import build_tiny_llama
from test_sft import LABELS, frames, sft_args, utterances

pytestmark = pytest.mark.gpu


def test_qlora_trains_lora_and_projector_on_a_4bit_model(tiny_tokenizer, tmp_path):
    pytest.importorskip("bitsandbytes")
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig

    from emollm.api import EmotionReasoner
    from emollm.modeling import EmotionLM
    from emollm.modeling.adapters import AdapterSpec, build_adapters
    from emollm.modeling.base import load_base_model
    from emollm.training import EmotionSFTTrainer, MultimodalCollator, build_examples, prepare_for_training

    folder = tmp_path / "tiny"
    build_tiny_llama(len(tiny_tokenizer)).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    )
    model, tokenizer = load_base_model(str(folder), quantization_config=quantization, device="cuda")
    assert getattr(model, "is_loaded_in_4bit", False)
    spec = AdapterSpec("audio", "prosody_frames", "mlp", 3)
    encoders, projectors = build_adapters([spec], model.get_input_embeddings().embedding_dim)
    lm = EmotionLM(model, tokenizer, "tiny", encoders=encoders, projectors=projectors, adapters=[spec])
    reasoner = EmotionReasoner(lm, labels=LABELS, strategy="minimal", mode="score")
    examples = build_examples(utterances(), reasoner.prompts, frames={"audio": frames()})
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    peft_model = prepare_for_training(lm.model, lora)
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    trainer = EmotionSFTTrainer(
        model=peft_model,
        args=sft_args(tmp_path, use_cpu=False, bf16=True),
        train_dataset=Dataset.from_list(examples),
        data_collator=MultimodalCollator(tokenizer, lm.num_tokens),
        processing_class=tokenizer,
        base_model=str(folder),
        adapters=[spec],
    )
    trainer.train()
    moved = {n for n, p in peft_model.named_parameters() if n in before and not torch.equal(p, before[n])}
    assert any("lora_" in n for n in moved) and any("emollm_projectors" in n for n in moved)
    lm.model = peft_model.eval()
    prompt = reasoner.build_prompt("yay", for_scoring=True)
    scores = lm.score([prompt], LABELS, frames=[{"audio": frames()["u0"]}])
    assert torch.isfinite(scores).all()
