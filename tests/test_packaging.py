"""The wheel ships the prompt templates and the console script."""

import subprocess
import sys
import zipfile
from pathlib import Path

from emollm.prompting import list_strategies

REPO = Path(__file__).resolve().parent.parent


def test_wheel_contains_prompts_and_entry_point(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("emollm-*.whl")
    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    assert list_strategies()
    for strategy in list_strategies():
        assert f"emollm/prompts/{strategy}.jinja" in names
    assert "emollm/modeling/encoders/prosody_frames.py" in names  # subpackages ship too
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "emollm = emollm.cli:main" in archive.read(entry_points).decode()
