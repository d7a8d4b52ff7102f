"""``python -m dspyq``: the same command line as ``dspyq``."""

from dspyq.cli import app

if __name__ == "__main__":
    app(prog_name="dspyq")
