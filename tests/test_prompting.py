import pytest

from emollm.data.schema import Turn
from emollm.errors import ConfigError
from emollm.prompting import list_strategies, prompts_dir, render_prompt, render_user_message, template_digest


def test_templates_are_found_and_listed():
    assert (prompts_dir() / "minimal.jinja").is_file()
    assert {"minimal", "cot"} <= set(list_strategies())


@pytest.mark.parametrize("strategy", list_strategies())
def test_every_template_renders_every_field(strategy, tiny_tokenizer):
    context = [Turn("Ross", "We were on a break!"), Turn("Rachel", "Oh, here we go."), Turn("Ross", "What?")]
    text = render_user_message(
        strategy,
        transcript="Leave me alone.",
        labels="meld7",
        context=context,
        context_turns=2,
        speaker="Rachel",
        prosody="Fast and loud.",
    )
    assert '"Leave me alone."' in text and "Rachel" in text and "Fast and loud." in text
    assert "neutral, joy, surprise, anger, sadness, disgust, fear" in text
    assert "Rachel: Oh, here we go." in text and "Ross: What?" in text
    assert "We were on a break!" not in text  # cut to the last two turns
    prompt = render_prompt(tiny_tokenizer, strategy, transcript="Leave me alone.", labels="meld7")
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")


def test_no_context_and_no_prosody_leave_no_trace():
    text = render_user_message(
        "minimal", transcript="Hi.", labels="iemocap4", context=[Turn("A", "x")], context_turns=0
    )
    assert "Conversation" not in text and "How it was said" not in text


def test_user_template_by_path(tmp_path):
    path = tmp_path / "mine.jinja"
    path.write_text("Say one of {{ labels | join('/') }} for: {{ transcript }}")
    assert (
        render_user_message(str(path), transcript="ok", labels=["sad", "angry"])
        == "Say one of sad/angry for: ok"
    )


def test_an_edited_template_file_is_read_again(tmp_path):
    path = tmp_path / "mine.jinja"
    path.write_text("First: {{ transcript }}")
    before = template_digest(str(path))
    assert render_user_message(str(path), transcript="ok", labels="ravdess8") == "First: ok"
    path.write_text("Second version: {{ transcript }}")  # a researcher edits the file mid-session
    assert render_user_message(str(path), transcript="ok", labels="ravdess8") == "Second version: ok"
    assert template_digest(str(path)) != before
    assert template_digest("minimal") == template_digest(str(prompts_dir() / "minimal.jinja"))


def test_bad_strategy_and_window():
    with pytest.raises(ConfigError, match="accepted: .*minimal"):
        render_user_message("verbose", transcript="x", labels="ravdess8")
    with pytest.raises(ConfigError, match="does not exist"):
        render_user_message("/nope/mine.jinja", transcript="x", labels="ravdess8")
    with pytest.raises(ConfigError, match="context_turns"):
        render_user_message("minimal", transcript="x", labels="ravdess8", context_turns=-1)
