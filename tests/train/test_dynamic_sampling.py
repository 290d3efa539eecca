import pytest
import torch

from longrl.train.dynamic_sampling import choose_groups, concat_rollouts, informative_groups


def test_informative_groups() -> None:
    advantages = torch.tensor([0.0, 0.0, 1e-12, -1e-13, 0.7, -0.7, 0.0, 0.0])
    assert informative_groups(advantages, 2).tolist() == [False, False, True, False]


def test_choose_groups_prefers_informative_and_fills_when_short() -> None:
    informative = torch.tensor([False, True, False, True, True])
    groups, filled = choose_groups(informative, 2)
    assert groups.tolist() == [1, 3] and filled == 0
    groups, filled = choose_groups(informative, 4)
    assert groups.tolist() == [0, 1, 3, 4] and filled == 1


def test_concat_rollouts_pads_each_side_correctly() -> None:
    a = {
        "prompt_ids": torch.tensor([[5, 6]]),
        "prompt_mask": torch.tensor([[1, 1]]),
        "completion_ids": torch.tensor([[7]]),
        "completion_mask": torch.tensor([[1]]),
        "advantages": torch.tensor([0.5]),
        "old_per_token_logps": torch.tensor([[-0.1]]),
        "num_items_in_batch": torch.tensor(1),
    }
    b = {
        "prompt_ids": torch.tensor([[4, 5, 6]]),
        "prompt_mask": torch.tensor([[1, 1, 1]]),
        "completion_ids": torch.tensor([[8, 9]]),
        "completion_mask": torch.tensor([[1, 1]]),
        "advantages": torch.tensor([-0.5]),
        "old_per_token_logps": torch.tensor([[-0.2, -0.3]]),
        "num_items_in_batch": torch.tensor(2),
    }
    merged = concat_rollouts([a, b], pad_token_id=0)
    assert merged["prompt_ids"].tolist() == [[0, 5, 6], [4, 5, 6]]  # prompts are left-padded
    assert merged["prompt_mask"].tolist() == [[0, 1, 1], [1, 1, 1]]
    assert merged["completion_ids"].tolist() == [[7, 0], [8, 9]]  # completions right-padded
    assert merged["completion_mask"].tolist() == [[1, 0], [1, 1]]
    assert torch.allclose(merged["old_per_token_logps"], torch.tensor([[-0.1, 0.0], [-0.2, -0.3]]))
    assert merged["advantages"].tolist() == [0.5, -0.5]
    assert "num_items_in_batch" not in merged  # recomputed by the caller


def test_unknown_rollout_fields_are_refused() -> None:
    with pytest.raises(NotImplementedError, match="pixel_values"):
        concat_rollouts([{"pixel_values": torch.zeros(1, 1), "advantages": torch.zeros(1)}], 0)
