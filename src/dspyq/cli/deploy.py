"""Commands of the production loop: ``deploy``, ``rollback``, ``deployments``,
``feedback`` and ``lineage``, each what the ``Client`` method of the same name does.

``dspyq deploy qa 3`` deploys a saved version; the source may also be a reference of
the same program (``qa:3``, ``qa@staging``: what staging serves), an import path
(``myapp.programs:qa``, saved as the next version first unless the latest is the same
program) or a DSPy JSON state file (``qa.json``, from ``program.save``, loaded into the
latest version's structure and saved likewise). Options are checked before anything is
saved or moved. Exit codes as for every command: 2 for bad input, 1 for a failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from dspyq.cli._common import (
    USAGE_ERROR,
    JsonOption,
    app,
    connected_client,
    errors_as_one_line,
    fail,
    parse_duration,
    print_json,
    stderr,
    stdout,
)
from dspyq.errors import DspyqError, InputError

if TYPE_CHECKING:
    from dspyq.api_client import Client
    from dspyq.core.module import Module
    from dspyq.deploy import Deployment

AliasOption = Annotated[str, typer.Option("--alias", help="The alias to move.")]


# --- deploy ----------------------------------------------------------------------------


def _check_options(name: str, alias: str, canary: float | None, **policy: Any) -> None:
    """The checks ``deploy`` makes before it writes anything, made before a source is
    saved as a new version, so bad options change nothing."""
    from dspyq.deploy.plan import checked_canary, checked_canary_policy, checked_name
    from dspyq.program_ref import check_alias

    checked_name(name)
    check_alias(alias)
    fraction = checked_canary(canary)
    checked_canary_policy(fraction, policy["window"], policy["min_samples"], policy["max_wait"])


def _same_as_latest(client: Client, name: str, program: Module) -> int | None:
    """The latest saved version of ``name`` when it is ``program`` unchanged."""
    from dspyq.core.program import program_to_spec

    saved = client.list_programs(name)
    if not saved:
        return None
    latest = saved[-1]
    spec = program_to_spec(program).model_dump(mode="json")
    return latest.version if latest.spec == spec else None


def _source_version(client: Client, name: str, source: str | None) -> tuple[int | None, bool]:
    """(the version ``source`` names, whether it was saved just now for this deploy)."""
    from dspyq.cli.optimize import load_program
    from dspyq.program_ref import parse_program_ref

    if source is None:
        return None, False
    text = source.strip()
    if text.isdigit():
        return int(text), False
    path = Path(text)
    if path.suffix.lower() == ".json" or path.is_file():
        if not path.is_file():
            fail(f"no program state file at {path}", USAGE_ERROR)
        if not client.list_programs(name):
            fail(
                f"{path} is a program's state, which loads into a saved program's structure, "
                f"and no version of {name!r} is saved: deploy an import path "
                "(pkg.module:program) first",
                USAGE_ERROR,
            )
        template = client.load_program(name)
        program = template.deepcopy()
        try:
            program.load(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            fail(f"cannot load {path} into {name!r}'s latest version: {exc}", USAGE_ERROR)
        return _save(client, name, program)
    _, colon, tail = text.rpartition(":")
    if colon and not tail.strip().isdigit():  # pkg.module:obj
        return _save(client, name, load_program(client, text))
    ref = parse_program_ref(text)
    if ref.name != name:
        raise InputError(
            f"{source!r} is a version of {ref.name!r}, not of {name!r}: an alias of {name!r} "
            f"points at versions of {name!r} (give a version number, or {name}@alias)"
        )
    if ref.alias is not None:
        from dspyq.store.resolve import ProgramResolver

        return ProgramResolver(client.engine).target(name, ref.alias).version, False
    return ref.version, False


def _save(client: Client, name: str, program: Module) -> tuple[int, bool]:
    same = _same_as_latest(client, name, program)
    if same is not None:
        return same, False
    return client.save_program(name, program), True


def _smoke(client: Client, name: str, version: int | None, path: Path) -> list[dict[str, Any]]:
    """The smoke examples in ``path``, each with the inputs of the version to deploy."""
    from dspyq.cli.optimize import input_names, read_examples

    keys = input_names(client.load_program(name, version))
    return [dict(example.items()) for example in read_examples(path, keys, "smoke file")]


@app.command()
def deploy(
    name: Annotated[str, typer.Argument(help="The saved program's name.")],
    source: Annotated[
        str | None,
        typer.Argument(
            help="What to deploy: a version (3), a reference (qa:3, qa@staging), an import "
            "path (pkg.module:program) or a DSPy state file (qa.json). Default: the latest."
        ),
    ] = None,
    alias: AliasOption = "production",
    canary: Annotated[
        float | None, typer.Option("--canary", help="Share of the traffic first, e.g. 0.1.")
    ] = None,
    canary_window: Annotated[
        str | None, typer.Option("--canary-window", help="How long the canary is judged: 5m.")
    ] = None,
    min_samples: Annotated[
        int | None, typer.Option("--min-samples", help="Canary jobs needed to judge it.")
    ] = None,
    canary_max_wait: Annotated[
        str | None,
        typer.Option("--canary-max-wait", help="How long a canary may wait for its samples: 1h."),
    ] = None,
    smoke: Annotated[
        Path | None, typer.Option("--smoke", help="Examples run first: a JSON list or JSONL.")
    ] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="pkg.module:function scoring smoke answers.")
    ] = None,
    min_score: Annotated[
        float | None, typer.Option("--min-score", help="Smoke score to reach, in percent.")
    ] = None,
    lm: Annotated[
        str | None, typer.Option("--lm", help="The LM, if the program was saved without one.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Point NAME@ALIAS at a version through the deployment pipeline (canary first if asked)."""
    window = parse_duration(canary_window, "--canary-window") if canary_window else None
    max_wait = parse_duration(canary_max_wait, "--canary-max-wait") if canary_max_wait else None
    with errors_as_one_line():
        _check_options(
            name, alias, canary, window=window, min_samples=min_samples, max_wait=max_wait
        )
        client = connected_client()
        try:
            version, saved = _source_version(client, name.strip(), source)
            examples = _smoke(client, name.strip(), version, smoke) if smoke else None
            policy = {"canary_window": window, "min_samples": min_samples}
            policy["canary_max_wait"] = max_wait
            try:
                done = client.deploy(
                    name,
                    version,
                    alias=alias,
                    smoke=examples,
                    metric=metric,
                    min_score=min_score,
                    canary=canary,
                    lm=lm,
                    **{key: value for key, value in policy.items() if value is not None},
                )
            except DspyqError:
                if saved:
                    stderr.print(
                        f"{name} version {version} was saved for this deploy: once the "
                        f"cause is fixed, dspyq deploy {name} {version}",
                        highlight=False,
                    )
                raise
        finally:
            client.close()
    _show_deployment(done, as_json, saved)


def _show_deployment(done: Deployment, as_json: bool, saved: bool = False) -> None:
    if as_json:
        print_json({**done.model_dump(mode="json"), "saved": saved})
        return
    before = "" if done.previous_version is None else f" (was {done.previous_version})"
    share = ""
    if done.canary_fraction is not None and done.status == "canary":
        share = f" as a canary on {done.canary_fraction:.0%} of its traffic"
    verb = "rolled back to" if done.action == "rollback" else "now serves"
    stdout.print(
        f"[bold]{done.name}@{done.alias}[/] {verb} version {done.version}{before}{share}",
        highlight=False,
    )
    steps = ", ".join(str(step["step"]) for step in done.steps if step.get("status") == "complete")
    stdout.print(f"[dim]steps: {steps}[/]", highlight=False)
    stdout.print(f"[dim]deployment {done.correlation_id} (dspyq events {done.correlation_id})[/]")


# --- rollback and the history ----------------------------------------------------------


@app.command()
def rollback(
    name: Annotated[str, typer.Argument(help="The deployed program's name.")],
    alias: AliasOption = "production",
    as_json: JsonOption = False,
) -> None:
    """Move NAME@ALIAS back to the version it served before (off a running canary)."""
    with errors_as_one_line():
        client = connected_client()
        try:
            done = client.rollback(name, alias)
        finally:
            client.close()
    _show_deployment(done, as_json)


@app.command()
def deployments(
    name: Annotated[
        str | None, typer.Argument(help="A program's name (default: every program).")
    ] = None,
    alias: Annotated[str | None, typer.Option("--alias", help="Only this alias.")] = None,
    as_json: JsonOption = False,
) -> None:
    """What each alias serves now, and the deployments and rollbacks that led there."""
    from dspyq.api_client import Client
    from dspyq.settings import get_settings
    from dspyq.store.aliases import AliasStore

    with errors_as_one_line(), Client(get_settings()) as client:
        found = client.deployments(name, alias=alias)
        serving = [
            row
            for row in AliasStore(client.engine).list(name)
            if alias is None or row.alias == alias
        ]
    if as_json:
        print_json(
            {
                "aliases": [row.model_dump(mode="json") for row in serving],
                "deployments": [d.model_dump(mode="json") for d in found],
            }
        )
        return
    for row in serving:
        canary = ""
        if row.canary_version is not None:
            canary = f", canary version {row.canary_version} on {row.canary_fraction or 0:.0%}"
        stdout.print(
            f"[bold]{row.name}@{row.alias}[/] serves version {row.version}{canary}",
            highlight=False,
        )
    if not found:
        stdout.print("[dim]no deployments recorded[/]")
        return
    table = Table("created", "program", "action", "version", "was", "status", "deployment")
    for done in found:
        table.add_row(
            f"{done.created_at:%Y-%m-%d %H:%M:%S}",
            f"{done.name}@{done.alias}",
            done.action,
            str(done.version),
            "-" if done.previous_version is None else str(done.previous_version),
            done.status,
            done.correlation_id,
        )
    stdout.print(table)


# --- feedback and lineage --------------------------------------------------------------


@app.command()
def feedback(
    job_id: Annotated[str, typer.Argument(help="The job's id (job.id, dspyq submit's).")],
    score: Annotated[str, typer.Argument(help="The answer's score, a number (e.g. 0.8).")],
    label: Annotated[str | None, typer.Option("--label")] = None,
    comment: Annotated[str | None, typer.Option("--comment")] = None,
    as_json: JsonOption = False,
) -> None:
    """Score a job's answer; the watcher and dspyq improve learn from it."""
    from dspyq.api_client import Client
    from dspyq.settings import get_settings

    try:
        value = float(score)
    except ValueError:
        fail(f"SCORE {score!r} is not a number (e.g. 1, 0.5)", USAGE_ERROR)
    with errors_as_one_line(), Client(get_settings()) as client:
        stored = client.feedback(job_id, value, label=label, comment=comment)
    if as_json:
        print_json(stored.model_dump(mode="json"))
        return
    served = (
        f"{stored.program_name}:{stored.program_version}" if stored.program_name else "a program"
    )
    stdout.print(f"feedback {stored.id}: {stored.score:g} on job {job_id} ({served})")


@app.command()
def lineage(
    name: Annotated[str, typer.Argument(help="The saved program's name.")],
    version: Annotated[str, typer.Argument(help="Its version (a whole number).")],
    as_json: JsonOption = False,
) -> None:
    """Where a version came from: its parent, the run and the feedback it was trained on."""
    from dspyq.api_client import Client
    from dspyq.settings import get_settings

    if not version.strip().isdigit():
        fail(f"VERSION {version!r} is not a version number (e.g. 3)", USAGE_ERROR)
    with errors_as_one_line(), Client(get_settings()) as client:
        chain = client.lineage(name, int(version))
    if as_json:
        print_json([link.model_dump(mode="json") for link in chain])
        return
    table = Table("version", "parent", "optimization run", "feedback rows")
    for link in chain:
        table.add_row(
            f"{link.name}:{link.version}",
            "-" if link.parent_version is None else str(link.parent_version),
            link.run_id or "-",
            str(len(link.feedback_ids)),
        )
    stdout.print(table)
