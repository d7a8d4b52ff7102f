"""``dspyq evaluate`` as a real process, against real workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli_optimize import cluster, dspyq_cli

from dspyq.testing.cluster import Cluster

pytestmark = pytest.mark.integration

__all__ = ["cluster"]  # the fixture, shared with the optimize CLI's tests


def test_evaluate_scores_the_devset_and_records_its_rows(cluster: Cluster) -> None:
    for i in range(3):
        cluster.fake_lm.answer_fields({"reasoning": "r", "answer": f"A{i}"}, match=f"Q{i}\\b")
    cluster.fake_lm.answer_fields({"reasoning": "r", "answer": "wrong"}, match="Q3\\b")
    devset = cluster.tmp_path / "dev.jsonl"
    devset.write_text(
        "".join(json.dumps({"question": f"Q{i}", "answer": f"A{i}"}) + "\n" for i in range(4))
    )
    cluster.start_worker("w1", concurrency=4)

    done = dspyq_cli(
        cluster, "evaluate", "cli_programs:qa", "--devset", str(devset),
        "--metric", "dspyq.metrics:answer_exact_match", "--lm", "openai/m", "--json",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert (shown["score"], shown["n"], shown["errors"]) == (75.0, 4, 0)
    rows = cluster.client.evaluation_rows(shown["evaluation_id"])
    assert [r.score for r in rows] == [1.0, 1.0, 1.0, 0.0]


def test_an_unreadable_devset_is_one_line_with_exit_code_2(
    cluster: Cluster, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    done = dspyq_cli(
        cluster, "evaluate", "cli_programs:qa", "--devset", str(bad),
        "--metric", "dspyq.metrics:answer_exact_match", "--lm", "openai/m",
    )  # fmt: skip
    assert done.returncode == 2
    assert "not JSON or JSONL" in done.stderr and "Traceback" not in done.stderr
