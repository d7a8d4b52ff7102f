"""dspyq."""
