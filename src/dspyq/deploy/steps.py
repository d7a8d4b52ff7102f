"""The first five steps of the deployment pipeline; ``enable_traffic`` is the move itself
(:mod:`dspyq.deploy.pipeline`).

Each step takes the :class:`~dspyq.deploy.plan.Plan`, raises a dspyq error when the
deployment must stop, and returns a small JSON result recorded with its
``dspy_deployment_step_complete`` event. Nothing here moves the alias.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Engine

from dspyq.core.program import program_from_spec
from dspyq.deploy.announce import AliasAnnouncer, AliasMessage
from dspyq.deploy.plan import LiveWorkers, Plan, RunSmoke
from dspyq.deploy.resources import check_credentials, lm_of_spec, provider_of
from dspyq.errors import ConfigurationError, InputError
from dspyq.settings import Settings
from dspyq.store.resolve import ProgramResolver

__all__ = ["PipelineSteps"]


class PipelineSteps:
    """The checks and preparations before traffic moves, with what they need."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        announcer: AliasAnnouncer,
        live_workers: LiveWorkers,
        run_smoke: RunSmoke | None,
    ) -> None:
        self.resolver = ProgramResolver(engine)
        self.settings = settings
        self.announcer = announcer
        self.live_workers = live_workers
        self.run_smoke = run_smoke

    def validate_resources(self, plan: Plan) -> dict[str, Any]:
        """The version is still saved, its LM's pool has live workers, its provider a key."""
        self.resolver.record(plan.name, plan.version)
        lm = plan.lm or lm_of_spec(plan.spec) or self.settings.default_lm
        if lm is None:
            raise ConfigurationError(
                f"{plan.reference} was saved without an LM and no default LM is set: save it "
                "with one, pass lm= to deploy, or set DSPYQ_DEFAULT_LM"
            )
        pool = provider_of(lm, self.settings)
        workers = int(self.live_workers(pool))
        if workers < 1:
            raise ConfigurationError(
                f"no live worker serves pool {pool!r} (the pool of {lm}): start one "
                f"(dspyq worker --pool {pool}) before deploying",
                context={"pool": pool},
            )
        credentials = check_credentials(pool, self.settings)
        return {"lm": lm, "pool": pool, "live_workers": workers, "credentials": credentials}

    def prepare_modules(self, plan: Plan) -> dict[str, Any]:
        """The version rebuilds here, importing only what ``allowed_imports`` allows."""
        program = program_from_spec(plan.spec, self.settings.allowed_imports)
        return {
            "kind": plan.spec.get("kind"),
            "predictors": [name for name, _ in program.named_predictors()],
        }

    def configure_services(self, plan: Plan) -> dict[str, Any]:
        """The serving configuration the version runs under (its pool's provider limits)."""
        pool = str(plan.results["validate_resources"]["pool"])
        conf = self.settings.provider(pool)
        return {
            "pool": pool,
            "rate_limit": conf.rate_limit,
            "timeout": conf.timeout,
            "num_retries": conf.num_retries,
            "breaker_fail_max": conf.breaker_fail_max,
        }

    def deploy_infrastructure(self, plan: Plan) -> dict[str, Any]:
        """Announce the new target, so workers can load the version before traffic moves."""
        receivers = self.announcer.publish(
            AliasMessage(
                event="prepare",
                name=plan.name,
                alias=plan.alias,
                version=plan.version,
                canary_fraction=plan.canary,
                deployment_id=plan.deployment_id,
            )
        )
        return {"channel": self.announcer.channel, "subscribers": receivers}

    def verify_deployment(self, plan: Plan) -> dict[str, Any]:
        """Run the smoke examples through the queue on the new version, and score them."""
        if plan.smoke is None:
            return {"smoke": 0}
        if self.run_smoke is None:
            raise ConfigurationError("smoke examples were given but nothing can run them")
        score = self.run_smoke(plan.reference, plan.smoke, plan.metric)
        result: dict[str, Any] = {"smoke": len(plan.smoke), "score": score}
        if plan.min_score is None:
            return result
        if score is None or not math.isfinite(float(score)) or float(score) < plan.min_score:
            raise InputError(
                f"smoke score {score} of {plan.reference} is below min_score {plan.min_score}",
                context={"score": score, "min_score": plan.min_score},
            )
        return {**result, "min_score": plan.min_score}
