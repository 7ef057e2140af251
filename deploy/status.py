"""``python -m deploy status``: what is deployed, its versions, settings and schedule (never a secret value).

Example:
    >>> render({"function": None, "layers": [], "schedules": [], "secret": None, "async": None, "alarms": [],
    ...         "topic": None})
    'function    not deployed'
"""

from __future__ import annotations

from typing import Any

from deploy.aws import Aws, error_code
from deploy.config import DeployConfig
from deploy.up import _paged


def _maybe(call, *codes: str):
    try:
        return call()
    except Exception as exc:
        if error_code(exc) in (*codes, "ResourceNotFoundException", "NoSuchEntity", "ParameterNotFound"):
            return None
        raise


def status(cfg: DeployConfig, aws: Aws | None = None) -> dict[str, Any]:
    """A plain dict of the deployed state (JSON-ready)."""
    aws = aws or Aws(cfg)
    lam = aws.client("lambda")
    conf = _maybe(lambda: lam.get_function_configuration(FunctionName=cfg.function_name))
    out: dict[str, Any] = {"function": None, "layers": [], "schedules": [], "secret": None, "async": None,
                           "alarms": [], "topic": None}
    if conf:
        out["function"] = {k: conf.get(k) for k in ("FunctionName", "FunctionArn", "Runtime", "Handler", "MemorySize",
                                                   "Timeout", "Architectures", "LastModified", "CodeSha256",
                                                   "CodeSize", "State", "LastUpdateStatus", "Version", "Role")}
        out["function"]["Layers"] = [layer["Arn"] for layer in conf.get("Layers", [])]
        variables = conf.get("Environment", {}).get("Variables", {})
        out["function"]["EnvironmentNames"] = sorted(variables)
        out["function"]["Trading"] = _trading(variables)
        # Not a secret: the hash of the user's strategy file that `up` packed (None for a built-in strategy)
        out["function"]["StrategySha256"] = variables.get("STRATEGY_SHA256")
        out["function"]["ReservedConcurrency"] = lam.get_function_concurrency(
            FunctionName=cfg.function_name).get("ReservedConcurrentExecutions")
        invoke = _maybe(lambda: lam.get_function_event_invoke_config(FunctionName=cfg.function_name))
        if invoke:
            out["async"] = {"MaximumRetryAttempts": invoke.get("MaximumRetryAttempts"),
                            "OnFailure": invoke.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")}
    out["layers"] = [{"Version": v["Version"], "Arn": v["LayerVersionArn"], "Description": v.get("Description", "")}
                     for v in _paged(lam, "list_layer_versions", "LayerVersions", LayerName=cfg.layer_name)]
    sched = aws.client("scheduler")
    listed = _maybe(lambda: _paged(sched, "list_schedules", "Schedules", GroupName=cfg.schedule_group)) or []
    for item in sorted(listed, key=lambda i: i["Name"]):
        s = sched.get_schedule(Name=item["Name"], GroupName=cfg.schedule_group)
        out["schedules"].append({"Name": s["Name"], "Expression": s["ScheduleExpression"],
                                 "Timezone": s.get("ScheduleExpressionTimezone", "UTC"), "State": s.get("State")})
    if cfg.secret_backend == "ssm":
        p = _maybe(lambda: aws.client("ssm").describe_parameters(
            ParameterFilters=[{"Key": "Name", "Values": [cfg.ssm_parameter]}])["Parameters"])
        out["secret"] = {"ssm": cfg.ssm_parameter, "Type": p[0]["Type"]} if p else None
    else:
        d = _maybe(lambda: aws.client("secretsmanager").describe_secret(SecretId=cfg.secret_name))
        if d:
            out["secret"] = {"secretsmanager": cfg.secret_name, "LastChanged": str(d.get("LastChangedDate", "")),
                             "ScheduledForDeletion": bool(d.get("DeletedDate"))}
    alarms = aws.client("cloudwatch").describe_alarms(AlarmNames=list(cfg.alarm_names))["MetricAlarms"]
    out["alarms"] = [{"Name": a["AlarmName"], "Metric": f"{a.get('Namespace')} {a.get('MetricName')}",
                      "State": a.get("StateValue"), "Actions": a.get("AlarmActions", [])}
                     for a in sorted(alarms, key=lambda a: a["AlarmName"])]
    sns = aws.client("sns")
    topic_arn = aws.arn("sns", cfg.topic_name)
    if _maybe(lambda: sns.get_topic_attributes(TopicArn=topic_arn), "NotFound"):
        subs = _paged(sns, "list_subscriptions_by_topic", "Subscriptions", TopicArn=topic_arn)
        out["topic"] = {"Arn": topic_arn, "Subscriptions": [
            {"Protocol": s.get("Protocol"), "Endpoint": s.get("Endpoint"),
             "Confirmed": s.get("SubscriptionArn", "").startswith("arn:")} for s in subs]}
    from deploy.report import last_cycle

    from deploy.pause import is_paused

    out["paused"] = is_paused(out["schedules"])
    out["last_cycle"] = last_cycle(cfg, aws, journal=_deployed_journal(conf))
    return out


def _deployed_journal(conf: dict | None) -> str | None:
    """The function's own ``JOURNAL`` (a live deploy has its own prefix), when it is deployed."""
    journal = ((conf or {}).get("Environment") or {}).get("Variables", {}).get("JOURNAL")
    return journal.rstrip("/") if journal and journal.startswith("s3://") else None


def _trading(env: dict[str, str]) -> str:
    """Paper or live, from the deployed settings (never a secret: those are not in the environment).

    >>> _trading({"BROKER": "alpaca", "APCA_PAPER": "false", "TRADING_ENABLED": "true", "MARKET_DATA": "alpaca"})
    'LIVE (APCA_PAPER=false, TRADING_ENABLED=true), MARKET_DATA=alpaca'
    """
    paper = env.get("APCA_PAPER", "true").lower() not in ("false", "0", "no", "off")
    mode = "paper broker" if env.get("BROKER") == "paper" else ("paper" if paper else "LIVE")
    return (f"{mode} (APCA_PAPER={env.get('APCA_PAPER', 'true')}, TRADING_ENABLED={env.get('TRADING_ENABLED', 'true')})"
            f", MARKET_DATA={env.get('MARKET_DATA', 'sample')}")


def _schedule_lines(schedules: list[dict]) -> list[str]:
    """The schedules, and PAUSED when all are disabled (``deploy pause``).

    >>> _schedule_lines([{"Name": "pt-0", "Expression": "cron(45 15 ? * MON-FRI *)", "Timezone": "UTC",
    ...                   "State": "DISABLED"}])[0]
    'paused      yes: every schedule is disabled, no cycle runs (python -m deploy resume)'
    """
    from deploy.pause import is_paused

    lines = []
    if is_paused(schedules):
        lines.append("paused      yes: every schedule is disabled, no cycle runs (python -m deploy resume)")
    elif schedules:
        lines.append("paused      no")
    for s in schedules:
        lines.append(f"schedule    {s['Name']}: {s['Expression']} {s['Timezone']} {s['State']}")
    return lines


def render(state: dict[str, Any]) -> str:
    """The status as aligned text lines."""
    f = state["function"]
    if not f:
        lines = ["function    not deployed"]
    else:
        lines = [f"function    {f['FunctionName']}  {f['Runtime']} {','.join(f['Architectures'] or [])}  "
                 f"{f['MemorySize']} MB  {f['Timeout']} s  state {f['State']}/{f['LastUpdateStatus']}",
                 f"code        sha256 {f['CodeSha256']}  {f['CodeSize']} bytes  modified {f['LastModified']}",
                 f"layers      {', '.join(a.rsplit(':', 2)[-2] + ':' + a.rsplit(':', 1)[-1] for a in f['Layers']) or 'none'}",
                 f"strategy    {f.get('StrategySha256') or 'built in (its code is in the code sha256)'}",
                 f"env         {', '.join(f['EnvironmentNames'])}",
                 *([f"trading     {f['Trading']}"] if f.get("Trading") else []),
                 "concurrency " + ("none reserved: cycles may overlap" if f.get("ReservedConcurrency") is None
                                   else f"reserved {f['ReservedConcurrency']}")]
    for v in state["layers"]:
        lines.append(f"layer       version {v['Version']}: {v['Description']}")
    lines += _schedule_lines(state["schedules"])
    if state["async"]:
        lines.append(f"async       retries {state['async']['MaximumRetryAttempts']}, on failure -> {state['async']['OnFailure']}")
    if state["secret"]:
        lines.append("secret      " + ", ".join(f"{k} {v}" for k, v in state["secret"].items()))
    topic = state.get("topic")
    if topic:
        subs = ", ".join(f"{s['Protocol']} {s['Endpoint']}" + ("" if s["Confirmed"] else " (pending confirmation)")
                         for s in topic["Subscriptions"])
        lines.append(f"topic       {topic['Arn']}: {subs or 'no subscriptions'}")
    for a in state.get("alarms", []):
        lines.append(f"alarm       {a['Name']}: {a['State']} ({a['Metric']})")
    if "last_cycle" in state:
        from deploy.report import render_last_cycle

        lines += render_last_cycle(state["last_cycle"])
    return "\n".join(lines)
