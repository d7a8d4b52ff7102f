"""Worker pools: launch and embedded services for ``dspyq worker`` and ``dspyq dev``."""
