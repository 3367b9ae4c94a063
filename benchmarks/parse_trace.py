"""Cost of ``parse_trace`` on degenerate completions, against the ``<answer>`` regular expression it replaced.

    python benchmarks/parse_trace.py [--repeats 5]

A GRPO step parses every completion once per reward callback, so a completion that costs a second to parse
costs (rewards × completions) seconds per step. The parser reads at most ``MAX_TRACE_CHARS`` characters; the
inputs here sit at that limit. For each: the best of ``--repeats`` timings of the whole parse, and of the
``<answer>`` scan alone — ``answer_spans`` (linear) and ``re.findall(r"<answer>(.*?)</answer>", DOTALL)``
(what the parser used before: quadratic when ``<answer>`` repeats unclosed). The last line is the result as
JSON.
"""

from __future__ import annotations

import argparse
import json
import re
import time

from tagfer.core.trace import MAX_TRACE_CHARS, answer_spans, parse_trace

OLD_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def at_limit(unit: str) -> str:
    return (unit * (MAX_TRACE_CHARS // len(unit) + 1))[:MAX_TRACE_CHARS]


CASES = {
    "repeated <answer>": at_limit("<answer>"),
    "repeated <answer> then one close": at_limit("<answer>")[: MAX_TRACE_CHARS - 9] + "</answer>",
    "400 step lines": at_limit("Inspect mouth (AU25) → lips parted → <bbox>[1,2,30,40]</bbox>\n"),
    "one long line": at_limit("a"),
    "valid trace": "Global analysis: x\nVerification loop:\nInspect mouth (AU25) → open → <bbox>[1,2,30,40]</bbox>\n"
    "Final conclusion: Combined AU25 indicate a dominant emotion of surprise.\n<answer> surprise </answer>",
}


def best(fn, text: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(text)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    print(f"{'input':34s} {'chars':>6s} {'parse ms':>9s} {'scan ms':>8s} {'regex ms':>9s} {'regex/scan':>10s}")
    for name, text in CASES.items():
        row = {
            "input": name,
            "chars": len(text),
            "parse_ms": 1000 * best(parse_trace, text, args.repeats),
            "scan_ms": 1000 * best(answer_spans, text, args.repeats),
            "regex_ms": 1000 * best(OLD_ANSWER.findall, text, args.repeats),
        }
        row["ratio"] = row["regex_ms"] / max(row["scan_ms"], 1e-6)
        rows.append(row)
        print(f"{name:34s} {row['chars']:6d} {row['parse_ms']:9.2f} {row['scan_ms']:8.3f} {row['regex_ms']:9.2f} {row['ratio']:10.0f}")
    print(json.dumps({"repeats": args.repeats, "rows": rows}))


if __name__ == "__main__":
    main()
