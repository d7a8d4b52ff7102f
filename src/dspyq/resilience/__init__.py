"""Keeping LM providers healthy under load: a rate limiter and a circuit breaker per
provider, both shared through Redis by every worker of a pool, and the retry policy
for single calls."""
