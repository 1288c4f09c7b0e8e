"""`make eval`: answer quality and token cost of the reasoner against one direct call to the
same backend, on three sets: GSM8K (numeric answers), multi-part questions with independent
checkable parts, and multi-step questions whose later steps need an earlier step's result.

Each question is asked in up to four modes: `direct` (one call to the backend), `flat` (the
reasoner with the plan's dependencies dropped, every sub-question answered on its own), `deps`
(the reasoner with dependencies: a step waits for, and is given, the answers it needs) and, with
`--tools`, `tools` (`deps` whose workers may call the calculator).

The backend is the service's own: the embedded model unless LLM_BASE_URL (and LLM_MODEL, ...)
are set, exactly as for `make run`.
"""

import argparse
import asyncio
import json
import math
import random
import re
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage

from api.backend.connect import open_backend
from api.backend.tools import BUILT_IN
from api.settings import Settings
from graph import RunContext, build_graph, execute
from graph.calls import call_text

DATA = Path(__file__).resolve().parent / "data"
RESULTS = Path(__file__).resolve().parent / "results"
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
SETS = ("gsm8k", "multipart", "multistep")
MODES = ("direct", "flat", "deps", "tools")
COLORS = {"direct": "C0", "flat": "C1", "deps": "C3", "tools": "C2"}


def read_jsonl(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line.strip()]


def gsm8k(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` of the 200 GSM8K test problems, picked with ``seed``; gold is the number after ####."""
    rows = read_jsonl("gsm8k-test-200.jsonl")
    picked = random.Random(seed).sample(rows, min(n, len(rows)))
    return [
        {"set": "gsm8k", "question": r["question"], "gold": r["answer"].rsplit("####", 1)[1].strip()}
        for r in picked
    ]


def multipart() -> list[dict[str, Any]]:
    """``parts``: one list of acceptable answers per part; every part must be answered."""
    return [
        {"set": "multipart", "question": r["question"], "parts": r["parts"]}
        for r in read_jsonl("multipart.jsonl")
    ]


def multistep() -> list[dict[str, Any]]:
    """``answer``: the final number (``steps`` is the worked chain, for readers only)."""
    return [
        {"set": "multistep", "question": r["question"], "gold": r["answer"]}
        for r in read_jsonl("multistep.jsonl")
    ]


def as_number(text: str) -> float | None:
    try:
        return float(text.replace(",", "").rstrip("."))
    except ValueError:
        return None


def grade(item: dict[str, Any], reply: str) -> bool:
    """A set with ``gold`` (GSM8K, multi-step): the reply's last number equals it. A set with
    ``parts`` (multi-part): every part has one of its alternatives in the reply, a number as any
    number equal to it, a word or phrase as a whole word (so "Au" is not found in "because")."""
    if "gold" in item:
        numbers = NUMBER.findall(reply)
        got = as_number(numbers[-1]) if numbers else None
        return got is not None and got == as_number(item["gold"])
    text = reply.lower()

    def has(alternative: str) -> bool:
        if as_number(alternative) is not None:
            return any(as_number(n) == as_number(alternative) for n in NUMBER.findall(text))
        return re.search(rf"(?<!\w){re.escape(alternative.lower())}(?!\w)", text) is not None

    return all(any(has(alt) for alt in part) for part in item["parts"])


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 0.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def load(args: argparse.Namespace) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for name in args.sets:
        items += (
            gsm8k(args.n, args.seed)
            if name == "gsm8k"
            else multipart()
            if name == "multipart"
            else multistep()
        )
    return items


async def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    settings = Settings()
    items = load(args)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    async with open_backend(settings) as backend:
        graph = build_graph(backend.models)
        gate = asyncio.Semaphore(args.concurrency)

        def context(plan_edges: bool = True, tools: bool = False) -> RunContext:
            return RunContext(
                tools=BUILT_IN if tools else {},
                max_subtasks=args.subtasks,
                max_revisions=args.revisions,
                max_output_tokens=args.max_output_tokens,
                max_concurrency=settings.max_concurrency,
                plan_edges=plan_edges,
                timeout_s=settings.llm_timeout_s,
                max_attempts=settings.llm_max_attempts,
            )

        async def direct(item: dict[str, Any]) -> dict[str, Any]:
            count = await backend.counter.count(item["question"])
            ctx = context()
            text, calls = await call_text(
                backend.models.synthesizer, [HumanMessage(item["question"])], ctx, node="synthesizer"
            )
            completion = sum(c["completion_tokens"] for c in calls)
            total = sum(c["prompt_tokens"] + c["completion_tokens"] for c in calls)
            return {"reply": text, "input": count.tokens, "output": completion,
                    "reasoning": total - count.tokens - completion, "total": total}  # fmt: skip

        def reasoner(
            plan_edges: bool, tools: bool = False
        ) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
            async def run(item: dict[str, Any]) -> dict[str, Any]:
                async def ignore(name: object, data: object) -> None:
                    return None

                result = await execute(
                    graph, item["question"], context(plan_edges, tools), run_id="eval",
                    question_count=await backend.counter.count(item["question"]), emit=ignore,
                )  # fmt: skip
                usage, plan = result["usage"], result["plan"]
                return {
                    "reply": result["answer"],
                    "input": usage["input_tokens"],
                    "output": usage["output_tokens"],
                    "reasoning": usage["reasoning_tokens"],
                    "total": usage["total_tokens"],
                    "status": result["status"],
                    "plan": plan,
                    "edges": sum(len(t["depends_on"]) for t in plan),
                    "fallbacks": result["fallbacks"],
                }

            return run

        runs = {
            "direct": direct,
            "flat": reasoner(False),
            "deps": reasoner(True),
            "tools": reasoner(True, True),
        }

        async def one(index: int, item: dict[str, Any]) -> None:
            async with gate:
                for mode in args.modes:
                    t0 = time.perf_counter()
                    try:
                        out = await runs[mode](item)
                    except Exception as exc:  # a failed call counts as a wrong answer, tokens unknown
                        out = {
                            "reply": "",
                            "input": 0,
                            "output": 0,
                            "reasoning": 0,
                            "total": 0,
                            "error": str(exc),
                        }
                    out.update(mode=mode, set=item["set"], correct=grade(item, out["reply"]),
                               seconds=time.perf_counter() - t0, question=item["question"])  # fmt: skip
                    rows.append(out)
                print(
                    f"  [{index + 1}/{len(items)}] {item['set']} {time.perf_counter() - started:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )

        await asyncio.gather(*[one(i, item) for i, item in enumerate(items)])
        backend_name = (
            "embedded SmolLM2-135M-Instruct" if backend.embedded else backend.models.synthesizer.name
        )
    args_out = {**vars(args), "sets": ",".join(args.sets), "modes": ",".join(args.modes)}
    return {"backend": backend_name, "args": args_out, "wall_s": time.perf_counter() - started, "rows": rows}


def summarize(report: dict[str, Any]) -> list[dict[str, Any]]:
    table = []
    rows = report["rows"]
    for subset in (*SETS, "all"):
        for mode in MODES:
            chosen = [r for r in rows if r["mode"] == mode and (subset == "all" or r["set"] == subset)]
            if not chosen:
                continue
            right = sum(r["correct"] for r in chosen)
            low, high = wilson(right, len(chosen))
            tokens = statistics.mean(r["total"] for r in chosen)
            accuracy = right / len(chosen)
            planned = [r["edges"] for r in chosen if "edges" in r]
            table.append({
                "set": subset, "mode": mode, "n": len(chosen), "accuracy": accuracy,
                "ci_low": low, "ci_high": high,
                "input": statistics.mean(r["input"] for r in chosen),
                "output": statistics.mean(r["output"] for r in chosen),
                "reasoning": statistics.mean(r["reasoning"] for r in chosen),
                "total": tokens, "accuracy_per_1k_tokens": accuracy / (tokens / 1000) if tokens else 0.0,
                "seconds": statistics.mean(r["seconds"] for r in chosen),
                "edges": statistics.mean(planned) if planned else None,
            })  # fmt: skip
    return table


def show(report: dict[str, Any], table: list[dict[str, Any]]) -> None:
    print(f"\nbackend: {report['backend']}; options: {report['args']}")
    print(f"{'set':<10}{'mode':<7}{'n':>4}{'accuracy':>10}{'95% CI':>15}{'input':>8}{'output':>8}"
          f"{'reasoning':>10}{'total':>8}{'acc/1k tok':>11}{'s/q':>7}{'edges':>7}")  # fmt: skip
    for r in table:
        ci = f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]"
        edges = "-" if r["edges"] is None else f"{r['edges']:.1f}"
        print(f"{r['set']:<10}{r['mode']:<7}{r['n']:>4}{r['accuracy']:>10.2f}{ci:>15}{r['input']:>8.0f}"
              f"{r['output']:>8.0f}{r['reasoning']:>10.0f}{r['total']:>8.0f}{r['accuracy_per_1k_tokens']:>11.3f}"
              f"{r['seconds']:>7.1f}{edges:>7}")  # fmt: skip
    print(f"wall time: {report['wall_s']:.0f} s")


def plot(table: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in table if r["set"] != "all"]
    labels = [f"{r['set']}\n{r['mode']}" for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(11, 1.1 * len(rows) + 2), 4.5))
    acc = [r["accuracy"] for r in rows]
    err = [[a - r["ci_low"] for a, r in zip(acc, rows, strict=True)],
           [r["ci_high"] - a for a, r in zip(acc, rows, strict=True)]]  # fmt: skip
    left.bar(labels, acc, yerr=err, capsize=4, color=[COLORS[r["mode"]] for r in rows])
    left.set(
        ylim=(0, 1), ylabel="accuracy (95% Wilson CI)", title="Accuracy (direct, flat plan, dependency plan)"
    )
    bottom = [0.0] * len(rows)
    for key, color in (("input", "C2"), ("output", "C0"), ("reasoning", "C1")):
        values = [r[key] for r in rows]
        right.bar(labels, values, bottom=bottom, label=key, color=color)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    right.set(ylabel="tokens per question", title="Tokens")
    right.legend()
    for axis in (left, right):
        axis.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def choices(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        picked = [p.strip() for p in text.split(",") if p.strip()]
        wrong = [p for p in picked if p not in allowed]
        if wrong or not picked:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)} (comma-separated)")
        return [a for a in allowed if a in picked]

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sets", type=choices(SETS), default=list(SETS), metavar="LIST",
        help="comma-separated sets to run, of gsm8k, multipart, multistep (default: all three)",
    )  # fmt: skip
    parser.add_argument(
        "--modes", type=choices(MODES), default=list(MODES[:3]), metavar="LIST",
        help="comma-separated modes, of direct, flat, deps, tools (default: the first three)",
    )  # fmt: skip
    parser.add_argument("--tools", action="store_true", help="also the tools mode (deps with the calculator)")
    parser.add_argument("--n", type=int, default=5, help="GSM8K questions (of 200; default 5)")
    parser.add_argument("--seed", type=int, default=0, help="which GSM8K questions")
    parser.add_argument("--concurrency", type=int, default=1, help="questions in flight at once")
    parser.add_argument("--subtasks", type=int, default=4)
    parser.add_argument("--revisions", type=int, default=1)
    parser.add_argument("--max-output-tokens", type=int, default=384)
    parser.add_argument("--out", default="eval", help="name of the results files under tests/bench/results/")
    args = parser.parse_args()
    if args.tools and "tools" not in args.modes:
        args.modes.append("tools")
    report = asyncio.run(evaluate(args))
    table = summarize(report)
    report["summary"] = table
    show(report, table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(report, indent=2))
    plot(table, RESULTS / f"{args.out}.png")
    print(f"\nwritten: {RESULTS / (args.out + '.json')}, {RESULTS / (args.out + '.png')}")


if __name__ == "__main__":
    main()
