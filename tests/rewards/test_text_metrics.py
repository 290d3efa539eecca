import pytest

from longrl.rewards import exact_match, squad_normalize, sub_exact_match, token_f1


def test_squad_normalize() -> None:
    assert squad_normalize("The  Quick, brown FOX!") == "quick brown fox"
    assert squad_normalize("an apple a day") == "apple day"


@pytest.mark.parametrize(
    ("pred", "gold", "em", "sub", "f1"),
    [
        ("Paris", "paris", 1.0, 1.0, 1.0),
        ("Paris, France", "Paris", 0.0, 1.0, pytest.approx(2 / 3)),
        ("London", "Paris", 0.0, 0.0, 0.0),
        ("yes", "no", 0.0, 0.0, 0.0),
        ("no", "no", 1.0, 1.0, 1.0),
        ("yes it is", "yes", 0.0, 1.0, 0.0),  # yes/no answers earn no partial F1
        ("", "Paris", 0.0, 0.0, 0.0),
    ],
)
def test_metrics(pred: str, gold: str, em: float, sub: float, f1: float) -> None:
    assert exact_match(pred, gold) == em
    assert sub_exact_match(pred, gold) == sub
    assert token_f1(pred, gold) == f1
