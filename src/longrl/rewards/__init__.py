"""Rewards: the rule check, the LLM judge and their hybrid, max(rule, judge)."""

from longrl.rewards.extraction import extract_final_answer
from longrl.rewards.hybrid import HybridReward, RewardBreakdown, batch_metrics
from longrl.rewards.judge import (
    JudgeCache,
    JudgeConfig,
    JudgeOutageError,
    JudgeStats,
    LLMJudge,
    parse_verdict,
)
from longrl.rewards.rule import AnswerKind, answer_kind, rule_reward, score_answer
from longrl.rewards.text import exact_match, squad_normalize, sub_exact_match, token_f1

__all__ = [
    "AnswerKind",
    "HybridReward",
    "JudgeCache",
    "JudgeConfig",
    "JudgeOutageError",
    "JudgeStats",
    "LLMJudge",
    "RewardBreakdown",
    "answer_kind",
    "batch_metrics",
    "exact_match",
    "extract_final_answer",
    "parse_verdict",
    "rule_reward",
    "score_answer",
    "squad_normalize",
    "sub_exact_match",
    "token_f1",
]
