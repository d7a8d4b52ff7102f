"""Run every corpus program in this process and print ``{name: stdout}`` as JSON.

``python run_corpus.py dspy`` runs them as written; ``python run_corpus.py dspyq`` runs
them with the package renamed (the only change a DSPy user makes). Each program runs in
fresh globals with the runtime configuration reset, so one cannot leak into the next.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import warnings
from pathlib import Path

PROGRAMS = Path(__file__).parent / "programs"


def ported(source: str) -> str:
    """The source with ``dspy`` renamed ``dspyq`` in its imports (``import dspyq as dspy``)."""
    source = re.sub(r"^import dspy$", "import dspyq as dspy", source, flags=re.M)
    return re.sub(r"^from dspy([. ])", r"from dspyq\1", source, flags=re.M)


def main(package: str) -> None:
    warnings.filterwarnings("ignore")
    outputs: dict[str, str] = {}
    for path in sorted(PROGRAMS.glob("*.py")):
        source = path.read_text()
        if package == "dspyq":
            source = ported(source)
        module = __import__(package)
        module.configure(lm=None, adapter=None, callbacks=[], track_usage=False)
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            try:
                exec(
                    compile(source, str(path), "exec", dont_inherit=True), {"__name__": "__main__"}
                )
            except Exception as exc:  # reported as the program's output, compared too
                print(f"ERROR {type(exc).__name__}: {exc}")
        outputs[path.stem] = buffer.getvalue()
    sys.stdout.write(json.dumps(outputs))


if __name__ == "__main__":
    main(sys.argv[1])
