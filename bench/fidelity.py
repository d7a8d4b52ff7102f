"""DSPy fidelity at scale: thousands of generated cases through DSPy 3.4.1 and dspyq.

``python bench/fidelity.py --cases 5000`` runs the differential cases of
``tests/fidelity`` (the same generator and comparison as the CI test, without
shrinking) and prints a report: what the cases exercised (outcomes on DSPy's side)
and every difference by class, with the smallest case of each class as a repro.
``--seed N`` draws another set of cases; the default is the CI test's fixed set.
Needs ``dspy==3.4.1`` (the dev extra). Exit status 1 when any difference is found.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fidelity"))

from fidelity_cases import cases
from fidelity_harness import Side, describe, differences
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed


def _outcomes(result: dict[str, Any]) -> list[str]:
    """What one case exercised on DSPy's side, e.g. ``format:ok``, ``parse:AdapterParseError``."""
    found = []
    for phase in ("build", "decode", "format", "call"):
        outcome = result.get(phase)
        if outcome is not None:
            found.append(f"{phase}:{outcome.get('error', 'ok')}")
    found += [f"parse:{outcome.get('error', 'ok')}" for outcome in result.get("parse", [])]
    return found


def run(count: int, seed: int | None) -> tuple[int, collections.Counter[str], dict[str, Any]]:
    dspy_side, dspyq_side = Side("dspy"), Side("dspyq")
    exercised: collections.Counter[str] = collections.Counter()
    smallest: dict[str, Any] = {}
    seen = 0

    @settings(
        max_examples=count,
        derandomize=seed is None,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases())
    def check(case: dict[str, Any]) -> None:
        nonlocal seen
        seen += 1
        ours, theirs = dspyq_side.run(case), dspy_side.run(case)
        exercised.update(_outcomes(theirs))
        for found in differences(theirs, ours):
            exercised[f"DIFFERENCE {found[0]}"] += 1
            size = len(json.dumps(case))
            if found[0] not in smallest or size < smallest[found[0]][0]:
                smallest[found[0]] = (size, case, found)

    if seed is not None:
        check = hypothesis_seed(seed)(check)
    try:
        check()
    finally:
        dspy_side.close()
        dspyq_side.close()
    return seen, exercised, smallest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    seen, exercised, smallest = run(args.cases, args.seed)
    elapsed = time.perf_counter() - started
    print(
        f"{seen} cases in {elapsed:.0f} s (seed: {args.seed if args.seed is not None else 'fixed'})"
    )
    print("\nOutcomes on DSPy's side:")
    for key, value in sorted(exercised.items()):
        if not key.startswith("DIFFERENCE"):
            print(f"  {key:40} {value}")
    differing = {k: v for k, v in exercised.items() if k.startswith("DIFFERENCE")}
    print(f"\nDifferences: {sum(differing.values())}")
    for key, value in sorted(differing.items()):
        print(f"  {key:40} {value}")
    for kind, (_, case, found) in sorted(smallest.items()):
        print(f"\n--- smallest case for {kind}:\n{json.dumps(case, ensure_ascii=False)}")
        print(describe([found]))
    sys.exit(1 if differing else 0)


if __name__ == "__main__":
    main()
