"""``dspyq optimize``: start an optimization run on the queue.

``dspyq optimize COPRO myapp.programs:qa --trainset train.jsonl --metric myapp.m:exact``
starts a run (``--wait`` follows it with a progress bar; ``--json`` for scripts).
Following runs afterwards is :mod:`dspyq.cli.runs` (``dspyq runs``, ``dspyq runs show``).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dspyq.cli._common import (
    RUNTIME_ERROR,
    USAGE_ERROR,
    JsonOption,
    app,
    connected_client,
    errors_as_one_line,
    fail,
    print_json,
    stdout,
)
from dspyq.cli.runs import print_run, run_summary
from dspyq.errors import InputError

if TYPE_CHECKING:
    from dspyq.api_client import Client
    from dspyq.core.example import Example
    from dspyq.core.module import Module
    from dspyq.optimize.teleprompter import Teleprompter

OPTIMIZERS = {
    "labeledfewshot": "LabeledFewShot",
    "bootstrapfewshot": "BootstrapFewShot",
    "bootstrapfewshotwithrandomsearch": "BootstrapFewShotWithRandomSearch",
    "randomsearch": "BootstrapFewShotWithRandomSearch",
    "copro": "COPRO",
    "miprov2": "MIPROv2",
    "mipro": "MIPROv2",
}
DEFAULT_METRIC = "dspyq.metrics:answer_exact_match"
ENDED_WELL = ("succeeded", "budget_exhausted")

# --- reading the inputs of a run ---------------------------------------------------------


def _option_value(text: str) -> Any:
    """``4`` -> 4, ``true`` -> True, ``null`` -> None, anything else stays a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _options(pairs: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            fail(f"--option {pair!r} is not name=value (e.g. --option breadth=10)", USAGE_ERROR)
        found[name.strip().replace("-", "_")] = _option_value(value)
    return found


def read_examples(path: Path, inputs: list[str] | None, what: str) -> list[Example]:
    """Examples from a JSON list or JSONL file of objects; ``inputs`` names their inputs."""
    from dspyq.core.example import Example

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read the {what} {path}: {exc.strerror or exc}", USAGE_ERROR)
    rows: list[Any]
    try:
        stripped = text.lstrip()
        if stripped.startswith("["):
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        fail(f"the {what} {path} is not JSON or JSONL: {exc.msg} (line {exc.lineno})", USAGE_ERROR)
    if not rows:
        fail(f"the {what} {path} holds no examples", USAGE_ERROR)
    examples = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            fail(f"{what} {path}: example {number} is not a JSON object", USAGE_ERROR)
        keys = inputs or []
        missing = [k for k in keys if k not in row]
        if missing:
            fail(
                f"{what} {path}: example {number} lacks input(s) {', '.join(missing)}", USAGE_ERROR
            )
        examples.append(Example(**row).with_inputs(*keys))
    return examples


def input_names(program: Module) -> list[str]:
    """The input fields of the program's first predictor (what examples feed it)."""
    for predictor in program.predictors():
        signature = getattr(predictor, "signature", None)
        if signature is not None:
            return list(signature.input_fields)
    return []


def load_program(client: Client, spec: str) -> Module:
    """``pkg.mod:obj`` (a Module, a Module class, or a function returning one), or a saved
    program's reference: ``qa@production`` (an alias), ``qa:3`` (a version; ``qa@3``
    is read the same way), ``qa`` (the latest)."""
    from dspyq.core.imports import resolve_import
    from dspyq.core.module import Module
    from dspyq.program_ref import parse_program_ref

    _, colon, tail = spec.rpartition(":")
    if colon and not tail.strip().isdigit():
        found = resolve_import(spec, client.settings.allowed_imports)
        if isinstance(found, type) or (callable(found) and not isinstance(found, Module)):
            found = found()
        if not isinstance(found, Module):
            raise InputError(f"{spec} is a {type(found).__name__}, not a dspyq Module")
        return found
    name, at, alias = spec.partition("@")
    if at and alias.strip().isdigit():
        spec = f"{name}:{alias.strip()}"
    ref = parse_program_ref(spec)
    if not client.list_programs(ref.name):
        raise InputError(
            f"no saved program named {ref.name!r}; give an import path (pkg.module:obj) "
            "or a saved program's reference (qa@production, qa:3, qa)"
        )
    if ref.alias is None:
        return client.load_program(ref.name, ref.version)
    from dspyq.api_client.references import references_of

    return references_of(client).lookup(ref).program.deepcopy()


def build_optimizer(
    name: str, metric: str, options: dict[str, Any], lm: str, allowed: list[str] | None
) -> tuple[Teleprompter, dict[str, Any]]:
    """The optimizer ``name`` with ``options`` (MIPROv2's compile options split off)."""
    import dspyq
    from dspyq.lm.lm import LM
    from dspyq.tasks.metrics import resolve_metric
    from dspyq.tasks.mipro_run import COMPILE_OPTIONS

    chosen = OPTIMIZERS.get(name.lower().replace("-", "").replace("_", ""))
    if chosen is None:
        known = sorted(set(OPTIMIZERS.values()))
        fail(f"unknown optimizer {name!r}; choose one of: {', '.join(known)}", USAGE_ERROR)
    cls = getattr(dspyq, chosen)
    kwargs = dict(options)
    compile_options: dict[str, Any] = {}
    if chosen == "MIPROv2":
        compile_options = {k: kwargs.pop(k) for k in list(kwargs) if k in COMPILE_OPTIONS}
        # The run's --lm/--teacher-lm are what workers use; these only satisfy the constructor.
        kwargs.setdefault("prompt_model", LM(lm))
        kwargs.setdefault("task_model", LM(lm))
    accepted = {
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }
    unknown = sorted(set(kwargs) - accepted - {"metric"})
    if unknown:
        raise InputError(
            f"{chosen} does not take option(s) {', '.join(unknown)}; it takes: "
            f"{', '.join(sorted(accepted - {'metric', 'prompt_model', 'task_model'}))}"
            + (f" (compile: {', '.join(COMPILE_OPTIONS)})" if chosen == "MIPROv2" else "")
        )
    if chosen != "LabeledFewShot":
        kwargs["metric"] = resolve_metric(metric, allowed)
    try:
        return cls(**kwargs), compile_options
    except TypeError as exc:
        raise InputError(f"{chosen} does not take these options: {exc}") from None


# --- dspyq optimize --------------------------------------------------------------------


@app.command("optimize")
def optimize(
    optimizer: Annotated[
        str,
        typer.Argument(
            help="LabeledFewShot, BootstrapFewShot, BootstrapFewShotWithRandomSearch, "
            "COPRO or MIPROv2."
        ),
    ],
    program: Annotated[
        str,
        typer.Argument(
            help="Import path pkg.module:obj, or a saved program: qa@production (an alias), "
            "qa:3 (a version), qa (the latest)."
        ),
    ],
    trainset: Annotated[
        Path, typer.Option("--trainset", help="Training examples: a JSON list or JSONL file.")
    ],
    valset: Annotated[
        Path | None, typer.Option("--valset", help="Validation examples (JSON or JSONL).")
    ] = None,
    inputs: Annotated[
        str | None,
        typer.Option(
            "--inputs", help="Comma-separated input keys (default: the program's input fields)."
        ),
    ] = None,
    metric: Annotated[
        str, typer.Option("--metric", help="Metric as an import path pkg.module:function.")
    ] = DEFAULT_METRIC,
    lm: Annotated[
        str | None,
        typer.Option("--lm", help="Task model as provider/name (default: DSPYQ_DEFAULT_LM)."),
    ] = None,
    teacher_lm: Annotated[
        str | None,
        typer.Option("--teacher-lm", help="Model that bootstraps demos and writes instructions."),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            help="Optimizer setting name=value, repeatable (e.g. -o breadth=10; MIPROv2 also "
            "takes compile options such as num_trials).",
        ),
    ] = None,
    budget_usd: Annotated[
        float | None, typer.Option("--budget-usd", help="Stop once the run's LM calls cost this.")
    ] = None,
    max_lm_calls: Annotated[
        int | None, typer.Option("--max-lm-calls", help="Stop after this many LM calls.")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Save the best program under this name.")
    ] = None,
    candidates_per_round: Annotated[
        int, typer.Option(help="Candidates (MIPROv2: trials) scored per round.")
    ] = 4,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the run until it ends.")] = False,
    timeout: Annotated[
        float | None, typer.Option(help="With --wait: give up after this many seconds.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Start an optimization run on the queue (see `dspyq runs` to follow it)."""
    if budget_usd is not None and budget_usd <= 0:
        fail("--budget-usd must be positive", USAGE_ERROR)
    if max_lm_calls is not None and max_lm_calls < 1:
        fail("--max-lm-calls must be at least 1", USAGE_ERROR)
    with errors_as_one_line():
        client = connected_client()
        model = lm or client.settings.default_lm
        if not model:
            fail("no model: pass --lm provider/name or set DSPYQ_DEFAULT_LM", USAGE_ERROR)
        student = load_program(client, program)
        keys = [k.strip() for k in inputs.split(",") if k.strip()] if inputs else None
        keys = keys or input_names(student)
        if not keys:
            fail("cannot tell the examples' inputs: pass --inputs question,...", USAGE_ERROR)
        train = read_examples(trainset, keys, "trainset")
        val = None if valset is None else read_examples(valset, keys, "valset")
        built, compile_options = build_optimizer(
            optimizer, metric, _options(option or []), model, client.settings.allowed_imports
        )
        run = client.optimize(
            built,
            student,
            trainset=train,
            valset=val,
            lm=model,
            teacher_lm=teacher_lm,
            metric=metric,
            budget_usd=budget_usd,
            max_lm_calls=max_lm_calls,
            run_name=name,
            candidates_per_round=candidates_per_round,
            compile_options=compile_options,
        )
        if not wait:
            if as_json:
                print_json(run_summary(run.record(), run.progress()["total"]))
            else:
                stdout.print(f"Started run {run.id} ({built.__class__.__name__}).")
                stdout.print(f"Follow it with: dspyq runs show {run.id}")
            return
        status = run.wait(timeout=timeout, progress=not as_json)
        record = run.record()
        summary = run_summary(record, run.progress()["total"])
    if as_json:
        print_json(summary)
    else:
        print_run(record, summary)
    if status not in ENDED_WELL:
        raise typer.Exit(RUNTIME_ERROR)
