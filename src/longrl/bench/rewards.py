"""Reward throughput: the rule check per route, and the hybrid reward against a slow served judge.

* ``rule/<route>``: ``rule_reward`` calls per second on generated responses (correct, wrong,
  reformatted, boxed, unfinished reasoning). Baseline: the least any scorer does, slicing off the
  answer section and comparing strings. The ratio is the price of the real parsing (numbers,
  option letters, SQuAD normalisation) as a share of that floor: a regression in the parsing
  lowers it, while a faster or slower machine moves both halves.
* ``hybrid/concurrency``: responses per second through ``HybridReward.score_batch`` when every
  response needs the judge, at the configured concurrency against concurrency 1.
* ``hybrid/warm_cache``: the same batch again on the same judge (every verdict cached) against
  the cold pass.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable

from longrl.bench.core import BenchContext, rates, timed_pairs
from longrl.bench.judge_server import serve_judge
from longrl.bench.report import BenchmarkResult, figure
from longrl.data.synthetic import GenerateConfig, generate_records
from longrl.rewards import HybridReward, JudgeConfig, LLMJudge, answer_kind, extract_final_answer, rule_reward


@dataclasses.dataclass(frozen=True)
class Sizes:
    rule_responses: int
    rule_passes: int  # timed passes over the responses (keeps a timing well above clock noise)
    judge_items: int


SIZES = {
    "small": Sizes(rule_responses=6_000, rule_passes=10, judge_items=64),
    "full": Sizes(rule_responses=20_000, rule_passes=30, judge_items=512),
}


@dataclasses.dataclass(frozen=True)
class Case:
    data_source: str
    response: str
    ground_truth: str
    question: str


def _reformatted(answer: str, rng: random.Random) -> str:
    """The same answer written differently: a rule check must see through it."""
    choices = [f"**{answer}**", f"\\boxed{{{answer}}}", f"{answer.upper()}.", f"({answer})"]
    return rng.choice(choices)


def _response(reasoning: str, answer: str, variant: int, rng: random.Random) -> str:
    if variant == 0:
        return f"<think>\n{reasoning}\n</think>\n\nTherefore, the answer is {answer}."
    if variant == 1:
        return f"<think>\n{reasoning}\n</think>\n\nTherefore, the answer is {_reformatted(answer, rng)}"
    if variant == 2:
        return f"<think>\n{reasoning}\n</think>\n\nI am not sure."  # no answer marker
    return f"<think>\n{reasoning} so the answer is {answer}"  # never closed its reasoning


def rule_cases(count: int, seed: int) -> list[Case]:
    """Responses in every route (numeric, choice, text) and form; some right, some wrong."""
    records = list(
        generate_records(
            GenerateConfig(output="-", num_records=96, doc_tokens_min=64, doc_tokens_max=256, seed=seed),
            count=lambda text: len(text) // 4,
        )
    )
    rng = random.Random(seed)
    cases = []
    for index in range(count):
        record = records[index % len(records)]
        wrong = records[(index * 7 + 3) % len(records)]["answer"]
        answer = record["answer"] if rng.random() < 0.6 else wrong
        reasoning = record["context"][: rng.randint(200, 2_000)]
        response = _response(reasoning, answer, rng.randrange(4), rng)
        cases.append(Case(record["data_source"], response, record["answer"], record["question"]))
    return cases


def judged_cases(cases: list[Case], count: int) -> list[Case]:
    """``count`` responses the rule check fails but that have an answer: each one goes to the judge."""
    picked: list[Case] = []
    seen = set()
    for case in cases:
        prediction = extract_final_answer(case.response)
        key = (case.question, prediction)
        if prediction is None or key in seen or _rule(case) >= 1:
            continue
        seen.add(key)
        picked.append(case)
        if len(picked) == count:
            return picked
    raise ValueError(f"only {len(picked)} judged cases among {len(cases)} responses; generate more")


def string_equality(case: Case) -> float:
    """The floor: the answer section compared as a string, no parsing."""
    return float(case.response.rpartition("</think>")[2].strip() == case.ground_truth)


def _score_all(scorer: Callable[[Case], float], cases: list[Case], passes: int) -> None:
    for _ in range(passes):
        for case in cases:
            scorer(case)


def _rule(case: Case) -> float:
    return rule_reward(case.data_source, case.response, case.ground_truth)


def rule_figures(cases: list[Case], passes: int, repeats: int) -> list:
    routes: dict[str, list[Case]] = {"mixed": cases}
    for case in cases:
        routes.setdefault(str(answer_kind(case.data_source)), []).append(case)
    figures = []
    for route, subset in routes.items():
        value, baseline = timed_pairs(
            lambda _, s=subset: _score_all(_rule, s, passes),
            lambda _, s=subset: _score_all(string_equality, s, passes),
            repeats,
            f"rule/{route}",
        )
        figures.append(
            figure(
                f"rule/{route}",
                "calls/s",
                rates(len(subset) * passes, value),
                rates(len(subset) * passes, baseline),
                baseline_name="answer-section string equality",
                note=f"{len(subset)} responses x {passes} passes" if route == "mixed" else "",
            )
        )
    return figures


async def _hybrid_pass(reward: HybridReward, cases: list[Case]) -> None:
    await reward.score_batch(
        [c.data_source for c in cases],
        [c.response for c in cases],
        [c.ground_truth for c in cases],
        [c.question for c in cases],
    )


def _judge_run(config: JudgeConfig, cases: list[Case], warm: bool) -> tuple[float, float | None, LLMJudge]:
    """Seconds of a cold pass with a fresh judge, then (if ``warm``) of a second pass on the same judge."""
    judge = LLMJudge(config)
    reward = HybridReward(judge)

    async def run() -> tuple[float, float | None]:
        started = asyncio.get_running_loop().time()
        await _hybrid_pass(reward, cases)
        cold = asyncio.get_running_loop().time() - started
        warm_time = None
        if warm:
            started = asyncio.get_running_loop().time()
            await _hybrid_pass(reward, cases)
            warm_time = asyncio.get_running_loop().time() - started
        await judge.aclose()
        return cold, warm_time

    cold, warm_time = asyncio.run(run())
    return cold, warm_time, judge


def hybrid_figures(context: BenchContext, cases: list[Case]) -> tuple[list, dict]:
    config = context.config
    latency = config.judge_latency_ms / 1000
    serial, concurrent, warm = [], [], []
    with serve_judge(latency) as (url, server):
        base = JudgeConfig(base_url=url, model="verifier", max_retries=0, timeout_s=60)
        one = base.model_copy(update={"max_concurrency": 1})
        many = base.model_copy(update={"max_concurrency": config.judge_concurrency})
        _judge_run(many, cases[:4], warm=False)  # warm up the client code paths
        for _ in range(config.repeats):
            serial.append(_judge_run(one, cases, warm=False)[0])
            cold, warm_time, judge = _judge_run(many, cases, warm=True)
            concurrent.append(cold)
            warm.append(warm_time or 0.0)
        details = {
            "judge_latency_ms": config.judge_latency_ms,
            "judged_responses": len(cases),
            "server_max_in_flight": server.max_in_flight,
            "last_judge_stats": judge.stats.snapshot(),
        }
    n = len(cases)
    figures = [
        figure(
            "hybrid/concurrency",
            "responses/s",
            rates(n, concurrent),
            rates(n, serial),
            baseline_name="judge concurrency 1",
            note=f"concurrency {config.judge_concurrency} vs 1; judge latency {config.judge_latency_ms:g} ms; "
            f"ideal ratio min({config.judge_concurrency}, {n})",
        ),
        figure(
            "hybrid/warm_cache",
            "responses/s",
            rates(n, warm),
            rates(n, concurrent),
            baseline_name=f"cold cache, concurrency {config.judge_concurrency}",
        ),
    ]
    return figures, details


def run(context: BenchContext) -> BenchmarkResult:
    sizes = SIZES[context.config.size]
    cases = rule_cases(sizes.rule_responses, context.config.seed)
    figures = rule_figures(cases, sizes.rule_passes, context.config.repeats)
    hybrid, details = hybrid_figures(context, judged_cases(cases, sizes.judge_items))
    return BenchmarkResult(figures=figures + hybrid, details={"rule_responses": len(cases), **details})
