"""The thin client is thin: importing it loads no store, no worker task, no SQLAlchemy.

And ``dspyq``'s public names, now imported on first use, all still resolve.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import dspyq

MAX_CLIENT_MODULES = 30

# What only workers, results or optimizers need: none of it loads with the client.
ABSENT_AFTER_CLIENT_IMPORT = (
    "sqlalchemy",
    "sqlmodel",
    "rich",
    "httpx",
    "dspyq.store",
    "dspyq.lm",
    "dspyq.adapters",
    "dspyq.optimize",
    "dspyq.resilience",
    "dspyq.tasks.execute",
    "dspyq.tasks.batch",
    "dspyq.tasks.multihop",
    "dspyq.tasks.evaluate",
    "dspyq.tasks.optimize",
    "dspyq.tasks.optimization",
    "dspyq.tasks.context",
    "dspyq.tasks.messages",
    "dspyq.api_client.runs",
    "dspyq.api_client.evaluation",
    "dspyq.api_client.pools",
    "dspyq.api_client.stream",
)


def _loaded_after(code: str) -> list[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return list(json.loads(out.stdout.splitlines()[-1]))


def test_importing_the_client_loads_few_dspyq_modules_and_no_sql() -> None:
    loaded = _loaded_after("import dspyq.api_client\nfrom dspyq.api_client import Client, Job")
    ours = [name for name in loaded if name == "dspyq" or name.startswith("dspyq.")]
    assert len(ours) <= MAX_CLIENT_MODULES, ours
    present = [
        name
        for name in ABSENT_AFTER_CLIENT_IMPORT
        if any(m == name or m.startswith(f"{name}.") for m in loaded)
    ]
    assert present == []


def test_building_a_client_makes_no_sql_engine() -> None:
    loaded = _loaded_after(
        "import dspyq\nclient = dspyq.Client()\nassert client._engine is None\nclient.close()"
    )
    assert "sqlalchemy" not in loaded
    assert "dspyq.store" not in loaded


def test_preparing_a_job_loads_no_store() -> None:
    loaded = _loaded_after(
        "import dspyq\n"
        "from dspyq.api_client.submit import build_request\n"
        "client = dspyq.Client()\n"
        "program = dspyq.Predict('question -> answer')\n"
        "request, task = build_request(\n"
        "    client, program, 'openai/m', (), None, None, {'question': 'q'}, spec=None\n"
        ")\n"
        "assert task == 'dspyq.execute_module' and request.provider == 'openai'\n"
        "client.close()"
    )
    assert "sqlalchemy" not in loaded
    assert not [name for name in loaded if name.startswith(("dspyq.store", "dspyq.tasks.execute"))]


def test_import_dspyq_alone_loads_no_module_or_optimizer() -> None:
    loaded = _loaded_after("import dspyq")
    ours = [name for name in loaded if name.startswith("dspyq.")]
    # Log masking is installed on import (stdlib re and logging only), so no process
    # that uses dspyq logs a secret.
    assert ours == ["dspyq.masking"]


def test_public_names_resolve_on_first_use_in_a_fresh_interpreter() -> None:
    _loaded_after(
        "import dspyq\n"
        "qa = dspyq.ChainOfThought('question -> answer')\n"
        "assert isinstance(qa, dspyq.Module)\n"
        "assert dspyq.metrics.answer_exact_match is dspyq.answer_exact_match\n"
        "from dspyq import Predict, Example, metrics\n"
        "assert Predict('q -> a').signature.output_fields\n"
    )


@pytest.mark.parametrize("name", dspyq.__all__)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(dspyq, name)
    assert value is not None
    namespace: dict[str, object] = {}
    exec(f"from dspyq import {name}", namespace)
    assert namespace[name] is value


def test_public_names_come_from_where_they_are_defined() -> None:
    import dspyq.core.predict
    import dspyq.metrics
    import dspyq.optimize.evaluate

    assert dspyq.Predict is dspyq.core.predict.Predict
    assert dspyq.Evaluate is dspyq.optimize.evaluate.Evaluate
    assert dspyq.metrics is sys.modules["dspyq.metrics"]


def test_dir_lists_every_public_name_and_an_unknown_one_raises() -> None:
    assert set(dspyq.__all__) <= set(dir(dspyq))
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        _ = dspyq.NoSuchThing  # type: ignore[attr-defined]
