"""Prompts render right with the chat templates that model families ship.

The templates below are the families' own ``chat_template`` strings (from their ``tokenizer_config.json``),
set on a byte-level tokenizer built in-process with the family's special tokens; where the family's
tokenizer adds BOS itself, so does the test's. For each: the rendered prompt holds the system text once and
the user message, ends where the model's reply starts (plus ``<answer>`` in score mode), carries at most one
BOS in its token ids, and scoring and generation run on a tiny random Llama.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from conftest import build_tiny_llama

from emollm.errors import ConfigError
from emollm.inputs import PromptBuilder
from emollm.modeling import generate, score_labels
from emollm.prompting import (
    SYSTEM_PROMPT,
    apply_chat,
    prompt_token_ids,
    render_prompt,
    render_user_message,
)
from emollm.training.collators import MultimodalCollator

# -- the families' templates, as shipped ----------------------------------------------------------------------

# Meta-Llama-3-8B-Instruct
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# Llama-3.1-8B-Instruct; the branches taken only when tools are passed are left out (emollm passes none)
LLAMA31 = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""  # noqa: E501

# Qwen2.5-7B-Instruct: its own system prompt when given none
QWEN25 = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""  # noqa: E501

# gemma-2-2b-it (Gemma 1 has the same): no system role
GEMMA2 = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)

# Mistral-7B-Instruct-v0.1: roles must alternate from a user turn; no generation prompt
MISTRAL = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

# Phi-3-mini-4k-instruct (the July 2024 update, with a system role)
PHI3 = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + message['content'] + "
    "'<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}"
    "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}"
    "{% endif %}"
)

# Phi-3-mini-4k-instruct as first released: the system message is dropped without a word
PHI3_FIRST = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + '\\n' + "
    "message['content'] + '<|end|>' + '\\n' + '<|assistant|>' + '\\n'}}{% elif (message['role'] == 'assistant') %}"
    "{{message['content'] + '<|end|>' + '\\n'}}{% endif %}{% endfor %}"
)

# SmolLM2-135M-Instruct (emollm's default model): its own system prompt when given none
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclass(frozen=True)
class Family:
    template: str
    specials: list[str]
    bos: str | None
    eos: str
    adds_bos: bool  # the family's tokenizer adds BOS when asked for special tokens
    reply_start: str  # the prompt ends with this: where the model's reply starts
    folded: bool = False  # the system role is refused or dropped: the system text goes into the user turn
    default_system: str | None = None  # what the template says when given no system message


LLAMA3_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]
PHI3_SPECIALS = [
    "<unk>",
    "<s>",
    "</s>",
    "<|endoftext|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
]
LLAMA3_REPLY = "<|start_header_id|>assistant<|end_header_id|>\n\n"

FAMILIES = {
    "llama3": Family(LLAMA3, LLAMA3_SPECIALS, "<|begin_of_text|>", "<|eot_id|>", True, LLAMA3_REPLY),
    "llama3.1": Family(LLAMA31, LLAMA3_SPECIALS, "<|begin_of_text|>", "<|eot_id|>", True, LLAMA3_REPLY),
    "qwen2.5": Family(
        QWEN25, CHATML_SPECIALS, None, "<|im_end|>", False, "<|im_start|>assistant\n",
        default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    ),
    "gemma2": Family(
        GEMMA2, ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"], "<bos>", "<eos>", True,
        "<start_of_turn>model\n", folded=True,
    ),
    "mistral": Family(MISTRAL, ["<unk>", "<s>", "</s>"], "<s>", "</s>", True, " [/INST]", folded=True),
    "phi3": Family(PHI3, PHI3_SPECIALS, "<s>", "<|endoftext|>", False, "<|assistant|>\n"),
    "phi3-first": Family(PHI3_FIRST, PHI3_SPECIALS, "<s>", "<|endoftext|>", True, "<|assistant|>\n", folded=True),
    "smollm2": Family(
        SMOLLM2, CHATML_SPECIALS, "<|im_start|>", "<|im_end|>", False, "<|im_start|>assistant\n",
        default_system="You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    ),
}  # fmt: skip

FIELDS = {"transcript": "I can't believe you did that.", "labels": "ravdess8"}


def family_tokenizer(family: Family):
    """A byte-level tokenizer with the family's special tokens, BOS added as the family's tokenizer does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(family.specials)
    if family.adds_bos:
        bos = (family.bos, backend.token_to_id(family.bos))
        backend.post_processor = processors.TemplateProcessing(
            single=f"{family.bos} $A", pair=f"{family.bos} $A {family.bos} $B", special_tokens=[bos]
        )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=family.bos, eos_token=family.eos)
    tokenizer.chat_template = family.template
    return tokenizer


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    return request.param, FAMILIES[request.param], family_tokenizer(FAMILIES[request.param])


def test_prompt_holds_system_and_user_and_ends_where_the_reply_starts(family):
    _, spec, tokenizer = family
    message = render_user_message("minimal", tokenizer=tokenizer, **FIELDS)
    prompt = render_prompt(tokenizer, "minimal", **FIELDS)
    assert prompt.count(SYSTEM_PROMPT) == 1
    assert prompt.count(message) == 1
    if spec.folded:  # the system text opens the user turn
        assert prompt.count(SYSTEM_PROMPT + "\n\n" + message) == 1
    if spec.default_system:  # ours replaces the template's own
        assert spec.default_system not in prompt
    assert prompt.endswith(spec.reply_start)


def test_score_mode_prefix_sits_where_the_reply_starts(family):
    _, spec, tokenizer = family
    prompt = render_prompt(tokenizer, "acoustic", for_scoring=True, **FIELDS)
    assert prompt.endswith(spec.reply_start + "<answer>")
    assert prompt.count(SYSTEM_PROMPT) == 1


def test_token_ids_carry_one_bos_at_most(family):
    _, spec, tokenizer = family
    prompt = render_prompt(tokenizer, "minimal", **FIELDS)
    ids = prompt_token_ids(tokenizer, prompt)
    assert ids == tokenizer(prompt, add_special_tokens=False)["input_ids"]  # nothing added to the template's
    collated, _ = MultimodalCollator(tokenizer).encode({"prompt": prompt, "completion": "happy"})
    assert collated[: len(ids)] == ids  # training sees the prompt as inference does
    if spec.bos is None:
        return
    bos = tokenizer.convert_tokens_to_ids(spec.bos)
    assert ids[:2] != [bos, bos] and ids.count(bos) == prompt.count(spec.bos)
    if (
        spec.bos not in spec.reply_start
    ):  # a BOS of its own (SmolLM2's is <|im_start|>, which opens each turn)
        assert prompt.count(spec.bos) <= 1
    if (
        prompt.startswith(spec.bos) and spec.bos not in spec.reply_start
    ):  # written by the template: one, first
        assert ids[0] == bos and ids.count(bos) == 1
        if spec.adds_bos:  # what tokenising with the tokenizer's defaults would have done
            assert tokenizer(prompt)["input_ids"][:2] == [bos, bos]


def test_scoring_and_generation_run_on_a_tiny_model(family):
    _, _, tokenizer = family
    model = build_tiny_llama(len(tokenizer))
    builder = PromptBuilder(tokenizer, "acoustic", "ravdess8")
    transcripts = ["Leave me alone.", "We won the final!"]
    scored = [builder.prompt(t, for_scoring=True) for t in transcripts]
    scores = score_labels(model, tokenizer, scored, "ravdess8")
    assert scores.shape == (2, 8) and torch.isfinite(scores).all()
    completions = generate(model, tokenizer, [builder.prompt(t) for t in transcripts], max_new_tokens=3)
    assert len(completions) == 2 and all(isinstance(c, str) for c in completions)


def test_no_system_message_keeps_the_template_default():
    """With ``system=None`` a template that has a default system prompt (Qwen 2.5, SmolLM2) says it."""
    for name in ("qwen2.5", "smollm2"):
        tokenizer = family_tokenizer(FAMILIES[name])
        prompt = render_prompt(tokenizer, "minimal", system=None, **FIELDS)
        assert prompt.count(FAMILIES[name].default_system) == 1


def test_mistral_has_no_generation_prompt_and_the_reply_follows_inst():
    tokenizer = family_tokenizer(FAMILIES["mistral"])
    messages = [{"role": "user", "content": "hi"}]
    with_prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert with_prompt == tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert apply_chat(tokenizer, "hi", system="Be brief.") == "<s>[INST] Be brief.\n\nhi [/INST]"


def test_gemma_folds_the_system_text_into_the_first_user_turn():
    tokenizer = family_tokenizer(FAMILIES["gemma2"])
    expected = "<bos><start_of_turn>user\nBe brief.\n\nhi<end_of_turn>\n<start_of_turn>model\n"
    assert apply_chat(tokenizer, "hi", system="Be brief.") == expected
    assert apply_chat(tokenizer, "hi", system=None) == expected.replace("Be brief.\n\n", "")


def test_a_template_that_cannot_render_a_user_turn_is_a_config_error():
    tokenizer = family_tokenizer(FAMILIES["smollm2"])
    tokenizer.chat_template = "{{ raise_exception('this template is broken') }}"
    with pytest.raises(ConfigError, match="this template is broken"):
        render_prompt(tokenizer, "minimal", **FIELDS)


def test_smollm2_renders_as_before(tiny_tokenizer):
    """A template that accepts a system role renders byte for byte as emollm did before templates were checked."""

    def before(tokenizer, strategy, *, system=SYSTEM_PROMPT, for_scoring=False):
        message = render_user_message(strategy, tokenizer=tokenizer, **FIELDS)
        suffix = "<answer>" if for_scoring and "<answer>" in message else ""
        messages = [{"role": "user", "content": message}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + suffix

    for tokenizer in (family_tokenizer(FAMILIES["smollm2"]), tiny_tokenizer):
        for strategy in ("minimal", "acoustic", "cot"):
            for system in (SYSTEM_PROMPT, None):
                for for_scoring in (False, True):
                    old = before(tokenizer, strategy, system=system, for_scoring=for_scoring)
                    new = render_prompt(tokenizer, strategy, system=system, for_scoring=for_scoring, **FIELDS)
                    assert new == old
                    assert (
                        prompt_token_ids(tokenizer, new)
                        == tokenizer(old, add_special_tokens=False)["input_ids"]
                    )


def test_a_plain_prompt_gets_one_bos():
    """Without a chat template the tokenizer adds BOS, unless the text already starts with it."""
    tokenizer = family_tokenizer(FAMILIES["mistral"])
    tokenizer.chat_template = None
    bos = tokenizer.bos_token_id
    plain = render_prompt(tokenizer, "minimal", **FIELDS)
    assert prompt_token_ids(tokenizer, plain).count(bos) == 1
    assert prompt_token_ids(tokenizer, "<s>" + plain).count(bos) == 1
