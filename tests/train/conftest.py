"""Fixtures of the training tests: generated SFT and RL data prepared with the tiny model's tokenizer."""

import pytest

from longrl.data import GenerateConfig, PrepareConfig, generate, prepare


@pytest.fixture(scope="module")
def data(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    common = {"kinds": ["multihop", "choice", "docmath"], "doc_tokens_min": 16, "doc_tokens_max": 200}
    generate(GenerateConfig(output=str(root / "sft.jsonl"), num_records=48, sft=True, seed=1, **common))
    generate(GenerateConfig(output=str(root / "qa.jsonl"), num_records=80, seed=2, **common))
    tokenizer = str(tiny_model_dir)
    prepare(
        PrepareConfig(
            inputs=[str(root / "sft.jsonl")],
            output_dir=str(root / "sft"),
            tokenizer=tokenizer,
            sft=True,
            phase_max_tokens=[1000],
            validation_fraction=0,
        )
    )
    stats = prepare(
        PrepareConfig(
            inputs=[str(root / "qa.jsonl")],
            output_dir=str(root / "rl"),
            tokenizer=tokenizer,
            phase_max_tokens=[220, 400],
            validation_fraction=0.1,
        )
    )
    assert all(phase["train_rows"] >= 8 for phase in stats["phases"])
    return root
