"""Deploy settings: one frozen dataclass that every ``python -m deploy`` command reads.

Names of the AWS resources derive from ``function_name`` so ``up`` and ``down`` always agree on what they own.

Example:
    >>> cfg = DeployConfig(function_name="prophettrend", region="us-east-1")
    >>> cfg.layer_name, cfg.role_name, cfg.schedule_group
    ('prophettrend-deps', 'prophettrend-exec', 'prophettrend')
    >>> cfg.schedules  # the default daily cadence: 15:45, and 12:45 for early-close days, each retried 5 min later
    ('cron(45,50 12 ? * MON-FRI *)', 'cron(45,50 15 ? * MON-FRI *)')
    >>> cfg.lambda_arch
    'x86_64'
    >>> cfg.topic_name, cfg.alarm_name, cfg.cycle_alarm_name
    ('prophettrend-alerts', 'prophettrend-errors', 'prophettrend-cycle-errors')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Literal

from deploy.schedule import schedules_for
from strategies.cadence import Cadence

Arch = Literal["x86_64", "arm64"]
SecretBackend = Literal["secretsmanager", "ssm"]

# The default strategy config's cadence (daily at 15:45 New York time); `up` derives the schedule from the
# deployed config's cadence, so the schedule is never typed twice.
DEFAULT_SCHEDULES = schedules_for(Cadence())
DEFAULT_TIMEZONE = "America/New_York"
RUNTIME = "python3.12"
HANDLER = "lambda_function.lambda_handler"
# From the sandboxed artifact run (benchmarks/bench_layer.py): import + first cycle peaks at about 155 MB RSS
# (python3.12 x86_64, 20 candidates, CmdStan subprocesses included). 512 MB leaves 3x headroom for a larger
# universe and fresh yfinance data; Lambda gives CPU in proportion to memory, so raise it to speed up fits.
DEFAULT_MEMORY_MB = 512
DEFAULT_TIMEOUT_S = 300
# One cycle at a time: two overlapping cycles would each see the other's orders as missing and double them.
RESERVED_CONCURRENCY = 1
# Settings the function derives itself and a deploy must not pin (live/lease.py): the lease lasts as long as the
# invocation may, so a cycle still sending orders is never overtaken by the next one.
DERIVED_ENV = {
    "LEASE_SECONDS": "the lease's lifetime comes from each invocation's deadline (the function timeout, --timeout); "
                     "a shorter lease would expire under a live cycle and let the next one trade the book again",
    "LEASE_MIN_SECONDS": "set by the handler from each invocation's remaining time, not by a deploy",
}
# The cycle prints its status as an Embedded Metric Format log line; CloudWatch turns it into these metrics.
METRIC_NAMESPACE = "ProphetTrend"
METRIC_DIMENSION = "Function"  # its value is the Lambda function's name
CYCLE_ERROR_METRIC = "CycleErrors"  # 1 for a cycle whose status is an error, else 0 (also Cycles, OrdersSent)
MISSED_DECISION_METRIC = "DecisionsMissed"  # 1 for a cycle that was a decision's last chance and left it unmade
# Names that look like credentials never go into the function's plaintext environment.
CREDENTIAL_WORDS = ("SECRET", "KEY", "TOKEN", "PASSWORD")
CREDENTIAL_PREFIXES = ("AWS_",)  # APCA_PAPER is a setting; the APCA_ keys contain KEY or SECRET


def looks_like_credential(name: str) -> bool:
    """True for an environment variable name that may hold a credential (``*SECRET*``, ``*KEY*``, ``AWS_*``...).

    >>> [n for n in ("ALPACA_SECRET", "AWS_REGION", "api_key", "GH_TOKEN", "APCA_PAPER", "UNIVERSE")
    ...  if looks_like_credential(n)]
    ['ALPACA_SECRET', 'AWS_REGION', 'api_key', 'GH_TOKEN']
    """
    upper = name.upper()
    return upper.startswith(CREDENTIAL_PREFIXES) or any(word in upper for word in CREDENTIAL_WORDS)


def check_universe(env: dict[str, str], configured: tuple[str, ...] | str | None, market_data: str) -> None:
    """Refuse to deploy a universe the function's configuration check would refuse: ``UNIVERSE`` set but empty,
    a symbol no ticker can be, or (with ``--market-data sample``) one the bundled sample has no prices for.

    >>> check_universe({"UNIVERSE": "KO,NOPE"}, None, "sample")
    Traceback (most recent call last):
    ...
    ValueError: UNIVERSE: unknown symbol(s) NOPE: sample has no prices for them (it has AAPL, AMD, ...)
    >>> check_universe({}, ("KO", "NOPE"), "yfinance")  # fetched on demand: checked when the source answers
    """
    from live.components import check_universe as live_check
    from live.config import effective_universe

    universe = effective_universe(env, configured)  # ConfigError is a ValueError: one line
    if universe and market_data == "sample":
        from marketdata.provider import SampleProvider

        label = "UNIVERSE" if "UNIVERSE" in env else "the config's universe"
        try:
            live_check(universe, SampleProvider(), label)
        except ValueError as exc:
            raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class DeployConfig:
    """Everything ``build``/``up``/``status``/``down`` need to know; defaults give a working paper deploy."""

    function_name: str = "prophettrend"
    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    arch: Arch = "x86_64"
    memory_mb: int = DEFAULT_MEMORY_MB
    timeout_s: int = DEFAULT_TIMEOUT_S
    schedules: tuple[str, ...] = DEFAULT_SCHEDULES
    timezone: str = DEFAULT_TIMEZONE
    bucket: str | None = None
    role_arn: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    secret_backend: SecretBackend = "secretsmanager"
    broker: Literal["alpaca", "paper"] = "alpaca"
    market_data: str = "yfinance"
    journal_prefix: str = "journal/"
    alarm_email: str | None = None
    # The packed strategy config's universe; the function's UNIVERSE (in ``env``) overrides it, as live.
    strategy_universe: tuple[str, ...] | str | None = None

    def __post_init__(self) -> None:
        # Lambda's rule for a function name is 1-64 letters, digits, - and _; every resource is named after it,
        # and "<name>-scheduler" must still fit IAM's 64-character role names.
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,54}", self.function_name or ""):
            raise ValueError(f"--function-name must be 1 to 54 letters, digits, - or _ (Lambda's rule, leaving room "
                             f"for the role names derived from it), got {self.function_name!r}")
        check_universe(self.env, self.strategy_universe, self.market_data)
        if self.arch not in ("x86_64", "arm64"):
            raise ValueError(f"--arch must be x86_64 or arm64, not {self.arch!r}")
        if self.secret_backend not in ("secretsmanager", "ssm"):
            raise ValueError(f"--secret-backend must be secretsmanager or ssm, not {self.secret_backend!r}")
        if self.broker not in ("alpaca", "paper"):
            raise ValueError(f"--broker must be alpaca or paper, not {self.broker!r}")
        if not 128 <= self.memory_mb <= 10240:
            raise ValueError(f"--memory must be between 128 and 10240 MB, not {self.memory_mb}")
        if not 1 <= self.timeout_s <= 900:
            raise ValueError(f"--timeout must be between 1 and 900 seconds, not {self.timeout_s}")
        if not self.schedules:
            raise ValueError("at least one --schedule expression is needed")
        for name in self.env:
            if name in DERIVED_ENV:
                raise ValueError(f"--env {name}: {DERIVED_ENV[name]}")
            if looks_like_credential(name):
                raise ValueError(
                    f"--env {name}: looks like a credential, and the function's environment is plaintext: for the "
                    "Alpaca keys set APCA_API_KEY_ID and APCA_API_SECRET_KEY when running `up` (kept in the secret "
                    "store chosen by --secret-backend); AWS access comes from the execution role (--role-arn)")

    def with_(self, **changes) -> "DeployConfig":
        return replace(self, **changes)

    @property
    def lambda_arch(self) -> str:
        return self.arch

    @property
    def layer_name(self) -> str:
        return f"{self.function_name}-deps"

    @property
    def role_name(self) -> str:
        return f"{self.function_name}-exec"

    @property
    def scheduler_role_name(self) -> str:
        return f"{self.function_name}-scheduler"

    @property
    def schedule_group(self) -> str:
        return self.function_name

    @property
    def secret_name(self) -> str:
        return f"{self.function_name}/alpaca"

    @property
    def ssm_parameter(self) -> str:
        return f"/{self.function_name}/alpaca"

    @property
    def dlq_name(self) -> str:
        return f"{self.function_name}-failures"

    @property
    def alarm_name(self) -> str:
        return f"{self.function_name}-errors"

    @property
    def cycle_alarm_name(self) -> str:
        return f"{self.function_name}-cycle-errors"

    @property
    def missed_alarm_name(self) -> str:
        return f"{self.function_name}-missed-decisions"

    @property
    def alarm_names(self) -> tuple[str, str, str]:
        """Every alarm ``up`` creates (Lambda Errors, CycleErrors, DecisionsMissed): ``down``, ``status`` and the
        cost model count these, so a new alarm is named once."""
        return self.alarm_name, self.cycle_alarm_name, self.missed_alarm_name

    @property
    def topic_name(self) -> str:
        return f"{self.function_name}-alerts"

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def default_bucket(self, account_id: str) -> str:
        """The bucket ``up`` creates when none is given: unique per account and region, lower case."""
        region = self.region or "us-east-1"
        return f"{self.function_name}-{account_id}-{region}".lower()
