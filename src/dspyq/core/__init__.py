"""dspyq's core: signatures, examples and predictions, modules and runtime configuration.

Pure Python with no broker: everything here runs in a plain process, like DSPy.
"""
