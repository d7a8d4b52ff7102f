"""Evaluation and optimization: ``Evaluate``, the built-in metrics, and the optimizers.

Everything here runs in-process, like DSPy; the distributed runs in ``dspyq.tasks``
reuse these same objects and ship metrics across the queue by import path.
"""
