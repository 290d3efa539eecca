"""Where a step keeps its checkpoints, and which one a restarted step resumes from."""

from __future__ import annotations

import re
from pathlib import Path

CHECKPOINTS_DIR = "checkpoints"
MODEL_DIR = "model"
RESULT_FILE = "result.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def latest_checkpoint(directory: str | Path) -> str | None:
    """The newest complete ``checkpoint-N`` in a Trainer output directory, or None."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = []
    for child in directory.iterdir():
        match = _CHECKPOINT.match(child.name)
        # trainer_state.json is written last: without it the checkpoint was cut off mid-save.
        if match and (child / "trainer_state.json").is_file():
            found.append((int(match.group(1)), child))
    return str(max(found)[1]) if found else None
