"""``dspyq.teleprompt``: the optimizers dspyq has, under DSPy's ``dspy.teleprompt`` names.

DSPy optimizers dspyq does not have yet are absent rather than stubbed, so an
import of one fails at the import line.
"""

from dspyq.optimize.better_together import BetterTogether
from dspyq.optimize.bootstrap import BootstrapFewShot
from dspyq.optimize.bootstrap_finetune import BootstrapFinetune
from dspyq.optimize.copro import COPRO
from dspyq.optimize.ensemble import Ensemble
from dspyq.optimize.gepa import GEPA
from dspyq.optimize.infer_rules import InferRules
from dspyq.optimize.knn_fewshot import KNNFewShot
from dspyq.optimize.labeled import LabeledFewShot
from dspyq.optimize.mipro import MIPROv2
from dspyq.optimize.optuna_fewshot import BootstrapFewShotWithOptuna
from dspyq.optimize.random_search import BootstrapFewShotWithRandomSearch
from dspyq.optimize.simba import SIMBA
from dspyq.optimize.teleprompter import Teleprompter

BootstrapRS = BootstrapFewShotWithRandomSearch  # DSPy's short alias

__all__ = [
    "COPRO",
    "GEPA",
    "SIMBA",
    "BetterTogether",
    "BootstrapFewShot",
    "BootstrapFewShotWithOptuna",
    "BootstrapFewShotWithRandomSearch",
    "BootstrapFinetune",
    "BootstrapRS",
    "Ensemble",
    "InferRules",
    "KNNFewShot",
    "LabeledFewShot",
    "MIPROv2",
    "Teleprompter",
]
