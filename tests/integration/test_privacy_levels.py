"""Privacy levels on real workers: what the provider receives at each level, and
completions that give away protected data failing the job at ``high``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import pytest

import dspyq
from dspyq.errors import InputError, PrivacyViolationError
from dspyq.testing.cluster import Cluster, running_cluster

pytestmark = pytest.mark.integration

INPUT_EMAIL = "alice.liddell@example.com"
DEMO_EMAIL = "demo.person@example.org"
LEAKED_KEY = "sk-leakedkey1234567890abcdef"


def _program() -> dspyq.Predict:
    program = dspyq.Predict("question -> answer")
    program.demos = [dspyq.Example(question=f"Who is {DEMO_EMAIL}?", answer="a demo person")]
    return program


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("privacy")
    with running_cluster(
        tmp, f"sqlite:///{tmp / 'store.db'}", latency=0.0, DSPYQ_PROVIDERS__OPENAI__NUM_RETRIES="0"
    ) as cluster:
        server = cluster.fake_lm
        server.answer_fields({"answer": f"write to {INPUT_EMAIL}"}, match="echo-email")
        server.answer_fields({"answer": f"the key is {LEAKED_KEY}"}, match="echo-key")
        server.answer_fields({"answer": "fine"})
        cluster.start_worker("w1", concurrency=2)
        yield cluster


def _run(cluster: Cluster, marker: str, level: str | None) -> tuple[dspyq.Job, str]:
    """Submit one job at ``level``; its result (or error) and what the provider got."""
    question = f"{marker}: what should I tell {INPUT_EMAIL}?"
    if level is None:
        job = cluster.client.submit(_program(), lm="openai/m", question=question)
    else:
        with dspyq.context(privacy=level):
            job = cluster.client.submit(_program(), lm="openai/m", question=question)
    with contextlib.suppress(PrivacyViolationError):  # asserted by the tests that expect it
        job.result(timeout=30)
    sent = [
        json.dumps(r["body"]) for r in cluster.fake_lm.requests if marker in json.dumps(r["body"])
    ]
    assert len(sent) == 1
    return job, sent[0]


def _events(cluster: Cluster, job: dspyq.Job, kind: str) -> list[dict[str, object]]:
    return [e.data for e in cluster.client.events(job.correlation_id) if e.event_type == kind]


def test_standard_sends_inputs_and_demos_as_they_are(cluster: Cluster) -> None:
    job, sent = _run(cluster, "standard-case", None)
    assert INPUT_EMAIL in sent and DEMO_EMAIL in sent
    assert job.result(timeout=5).answer == "fine"
    assert _events(cluster, job, "pii_redacted") == []


def test_medium_redacts_the_inputs_only(cluster: Cluster) -> None:
    job, sent = _run(cluster, "medium-case", "medium")
    assert INPUT_EMAIL not in sent and "[REDACTED_EMAIL]" in sent
    assert DEMO_EMAIL in sent  # demos are the program's, not the job's data
    assert _events(cluster, job, "pii_redacted") == [{"scope": "inputs", "counts": {"email": 1}}]
    # No output check at medium: an answer naming the address is returned.
    echo, _ = _run(cluster, "medium echo-email", "medium")
    assert INPUT_EMAIL in echo.result(timeout=5).answer


def test_high_redacts_demos_too(cluster: Cluster) -> None:
    job, sent = _run(cluster, "high-case", "high")
    assert INPUT_EMAIL not in sent and DEMO_EMAIL not in sent
    assert job.result(timeout=5).answer == "fine"


def test_high_fails_a_completion_that_gives_back_a_redacted_input(cluster: Cluster) -> None:
    job, _ = _run(cluster, "high echo-email", "high")
    with pytest.raises(PrivacyViolationError) as info:
        job.result(timeout=5)
    assert info.value.context["kinds"] == ["email"]
    [event] = _events(cluster, job, "privacy_violation")
    assert event == {"level": "high", "kinds": ["email"]}  # kinds, never the values
    [row] = cluster.client.executions(job.correlation_id)
    assert row.status == "failed" and row.outputs in (None, {})
    assert INPUT_EMAIL not in json.dumps(row.error)


def test_high_fails_a_completion_holding_a_secret_shaped_value(cluster: Cluster) -> None:
    job, _ = _run(cluster, "high echo-key", "high")
    with pytest.raises(PrivacyViolationError) as info:
        job.result(timeout=5)
    assert info.value.context["kinds"] == ["api_key"]
    assert LEAKED_KEY not in str(info.value)


def _sent(cluster: Cluster, marker: str) -> list[str]:
    return [
        json.dumps(r["body"]) for r in cluster.fake_lm.requests if marker in json.dumps(r["body"])
    ]


def test_submit_takes_its_own_level(cluster: Cluster) -> None:
    question = f"kwarg-medium: what should I tell {INPUT_EMAIL}?"
    job = cluster.client.submit(_program(), lm="openai/m", privacy="medium", question=question)
    assert job.result(timeout=30).answer == "fine"
    [sent] = _sent(cluster, "kwarg-medium")
    assert INPUT_EMAIL not in sent and DEMO_EMAIL in sent


def test_the_strictest_of_submit_and_context_applies(cluster: Cluster) -> None:
    question = f"kwarg-strictest: what should I tell {INPUT_EMAIL}?"
    with dspyq.context(privacy="high"):
        job = cluster.client.submit(
            _program(), lm="openai/m", privacy="standard", question=question
        )
    assert job.result(timeout=30).answer == "fine"
    [sent] = _sent(cluster, "kwarg-strictest")
    assert INPUT_EMAIL not in sent and DEMO_EMAIL not in sent  # high, not standard


def test_map_and_stream_take_a_level(cluster: Cluster) -> None:
    inputs = [{"question": f"map-high-{i}: tell {INPUT_EMAIL}"} for i in range(4)]
    jobs = cluster.client.map(_program(), inputs, lm="openai/m", privacy="high")  # one batch
    assert [job.result(timeout=30).answer for job in jobs] == ["fine"] * 4
    for i in range(4):
        [sent] = _sent(cluster, f"map-high-{i}:")
        assert INPUT_EMAIL not in sent and DEMO_EMAIL not in sent
    question = f"stream-medium: tell {INPUT_EMAIL}"
    items = list(
        cluster.client.stream(_program(), lm="openai/m", privacy="medium", question=question)
    )
    assert items[-1].answer == "fine"
    [sent] = _sent(cluster, "stream-medium")
    assert INPUT_EMAIL not in sent and DEMO_EMAIL in sent


def test_an_unknown_level_is_refused_before_anything_is_sent(cluster: Cluster) -> None:
    before = len(cluster.fake_lm.requests)
    with pytest.raises(InputError, match=r"unknown privacy level 'secret'.*standard, medium, high"):
        cluster.client.submit(_program(), lm="openai/m", privacy="secret", question="q")
    with pytest.raises(InputError, match="unknown privacy level 'HIGH'"):
        cluster.client.map(_program(), [{"question": "q"}], lm="openai/m", privacy="HIGH")
    with dspyq.context(privacy="maximum"), pytest.raises(InputError, match="'maximum'"):
        cluster.client.submit(_program(), lm="openai/m", question="q")
    assert len(cluster.fake_lm.requests) == before


def _private(level: str) -> dspyq.Predict:
    program = _program()
    program.privacy = level
    return program


def test_a_programs_own_level_applies_on_the_worker(cluster: Cluster) -> None:
    question = f"program-high: what should I tell {INPUT_EMAIL}?"
    job = cluster.client.submit(_private("high"), lm="openai/m", question=question)
    assert job.result(timeout=30).answer == "fine"
    [sent] = _sent(cluster, "program-high")
    assert INPUT_EMAIL not in sent and DEMO_EMAIL not in sent  # high: demos too
    # A batch of map carries the program once, its level with it.
    inputs = [{"question": f"program-map-{i}: tell {INPUT_EMAIL}"} for i in range(3)]
    jobs = cluster.client.map(_private("medium"), inputs, lm="openai/m")
    assert [j.result(timeout=30).answer for j in jobs] == ["fine"] * 3
    for i in range(3):
        [sent] = _sent(cluster, f"program-map-{i}:")
        assert INPUT_EMAIL not in sent and DEMO_EMAIL in sent  # medium: inputs only


def test_the_strictest_of_program_and_submit_applies(cluster: Cluster) -> None:
    question = f"program-vs-submit: what should I tell {INPUT_EMAIL}?"
    job = cluster.client.submit(
        _private("high"), lm="openai/m", privacy="standard", question=question
    )
    assert job.result(timeout=30).answer == "fine"
    [sent] = _sent(cluster, "program-vs-submit")
    assert DEMO_EMAIL not in sent  # the program's high, not the submit's standard
    question = f"submit-vs-program: what should I tell {INPUT_EMAIL}?"
    job = cluster.client.submit(
        _private("medium"), lm="openai/m", privacy="high", question=question
    )
    assert job.result(timeout=30).answer == "fine"
    [sent] = _sent(cluster, "submit-vs-program")
    assert DEMO_EMAIL not in sent


def test_a_saved_program_keeps_its_level_when_run_by_reference(cluster: Cluster) -> None:
    version = cluster.client.save_program("private-qa", _private("high"))
    assert cluster.client.load_program("private-qa", version).privacy == "high"
    question = f"by-reference: what should I tell {INPUT_EMAIL}?"
    job = cluster.client.submit(f"private-qa:{version}", lm="openai/m", question=question)
    assert job.result(timeout=30).answer == "fine"
    [sent] = _sent(cluster, "by-reference")
    assert INPUT_EMAIL not in sent and DEMO_EMAIL not in sent


def test_a_programs_level_is_checked_and_absent_from_specs_without_one() -> None:
    from dspyq.core.program import program_from_spec, program_to_spec

    program = _program()
    with pytest.raises(InputError, match=r"unknown privacy level 'strict'.*standard, medium, high"):
        program.privacy = "strict"  # type: ignore[assignment]
    assert program.privacy is None
    assert "privacy" not in program_to_spec(program).model_dump(mode="json")
    spec = program_to_spec(_private("medium")).model_dump(mode="json")
    assert spec["privacy"] == "medium"
    assert program_from_spec(spec).privacy == "medium"
    with pytest.raises(InputError, match="privacy"):
        program_from_spec({**spec, "privacy": "HIGH"})
