"""python -m deploy build|up|pause|resume|invoke|logs|status|report|down: run the strategy in AWS Lambda.

See docs/deploy.md (and docs/going-live.md, docs/cost.md). Every AWS command takes --region, --profile and
--endpoint-url (moto, LocalStack).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clitools import DefaultsHelpFormatter, OneLineErrorParser, UserError, guarded
from deploy.config import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, DEFAULT_TIMEZONE, DeployConfig

HELP_FORMATTER = DefaultsHelpFormatter
DEFAULT_ARCH = "x86_64"
DEFAULT_MARKET_DATA = "yfinance"
LIVE_JOURNAL_PREFIX = "journal-live/"  # the live bot's own journal, ledger, lease and decision marks


def _aws_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("AWS")
    g.add_argument("--function-name", default="prophettrend", help="names every resource (layer, role, schedule...)")
    g.add_argument("--region", help="AWS region (default: the profile's or AWS_REGION)")
    g.add_argument("--profile", help="AWS named profile")
    g.add_argument("--endpoint-url", help="send every AWS call here (moto server, LocalStack)")


def _build_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("build")
    g.add_argument("--arch", choices=["x86_64", "arm64"], default=None,
                   help="Lambda architecture (build: x86_64 unless given; up: the built layer's, else x86_64)")
    g.add_argument("--python-version", default="3.12", help="Lambda runtime's Python (the layer's wheels)")
    g.add_argument("--source", choices=["index", "installed"], default="index",
                   help="layer from the package index (any arch) or copied from this machine's site-packages "
                        "(only for this machine's Python and arch)")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="precompile bytecode with a real interpreter of --python-version (a 3x faster cold start; "
                        "up: as the built layer was, else off)")
    g.add_argument("--no-strip", action="store_true", help="keep symbols in extension modules")
    g.add_argument("--budget-mb", type=float, default=250.0, help="fail when function + layer unzip to more")
    g.add_argument("--out", type=Path, default=Path("build/lambda"), help="where the zips are written")
    st = p.add_argument_group("strategy (packed into the function zip; the schedule follows its cadence)")
    st.add_argument("--config", type=Path, default=None, metavar="FILE.toml",
                    help="deploy exactly this config, e.g. a backtest's runs/<run>/config.toml")
    st.add_argument("--strategy", default=None, metavar="SPEC",
                    help="prophet-trend (default), ma-crossover, path/to/file.py:Class (the file is packed) or module:Class")
    st.add_argument("--param", action="append", default=None, metavar="KEY=VALUE", help="a strategy parameter, repeatable")
    st.add_argument("--name", default=None, help="the strategy's name (prefix of its order ids)")


def _deploy_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("function")
    g.add_argument("--memory", type=int, default=DEFAULT_MEMORY_MB, help="MB (from the measured peak, see docs/deploy.md)")
    g.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S, help="seconds")
    g.add_argument("--timezone", default=DEFAULT_TIMEZONE, help="time zone of the schedule expressions")
    g.add_argument("--bucket", help="S3 bucket for artifacts and the journal (default: created, named after the account)")
    g.add_argument("--role-arn", help="use this execution role instead of creating a least-privilege one")
    g.add_argument("--secret-backend", choices=["secretsmanager", "ssm"], default="secretsmanager",
                   help="where the Alpaca keys (read from APCA_API_KEY_ID/APCA_API_SECRET_KEY at deploy time) are stored")
    g.add_argument("--broker", choices=["alpaca", "paper"], default="alpaca",
                   help="paper: the local paper broker in /tmp, no keys needed (for a smoke test)")
    g.add_argument("--market-data", default=None, metavar="SOURCE",
                   help="the function's MARKET_DATA: sample, yfinance, alpaca or csv:PATH (default: the config's "
                        "market_data, else yfinance)")
    g.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra function environment, repeatable")
    g.add_argument("--alarm-email", help="mail the CloudWatch alarm to this address (SNS subscription)")
    g.add_argument("--function-zip", type=Path, help="deploy this zip instead of building (with --layer-zip)")
    g.add_argument("--layer-zip", type=Path, help="deploy this layer zip instead of building (with --function-zip)")
    g.add_argument("--dry-run", action="store_true", help="print the plan, call nothing")
    g.add_argument("--live", action="store_true",
                   help="trade real money: APCA_PAPER=false and TRADING_ENABLED=true, its own journal and ledger "
                        "(asks for confirmation; see docs/going-live.md)")
    g.add_argument("--yes", action="store_true", help="confirm --live without a prompt (scripts, CI)")


def make_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="python -m deploy", description=__doc__, formatter_class=HELP_FORMATTER)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    b = sub.add_parser("build", help="build function.zip and the layer zip, print the size table",
                       formatter_class=HELP_FORMATTER)
    _build_flags(b)
    u = sub.add_parser("up", help="check access, reuse what was built and build what is missing, then create or "
                       "update everything (idempotent)", formatter_class=HELP_FORMATTER)
    _aws_flags(u)
    _build_flags(u)
    _deploy_flags(u)
    for verb, text in (("pause", "disable the schedules: no more cycles; function, state and alarms stay"),
                       ("resume", "enable the schedules again")):
        pr = sub.add_parser(verb, help=text, description=text, formatter_class=HELP_FORMATTER)
        _aws_flags(pr)
    i = sub.add_parser("invoke", help="run one cycle now and print its summary", formatter_class=HELP_FORMATTER)
    _aws_flags(i)
    i.add_argument("--event", default="{}", help="JSON event for the handler, e.g. '{\"now\": \"...\"}'")
    lg = sub.add_parser("logs", help="print (or --follow) the function's CloudWatch logs", formatter_class=HELP_FORMATTER)
    _aws_flags(lg)
    lg.add_argument("--since", type=float, default=60.0, help="minutes back")
    lg.add_argument("--follow", action="store_true", help="keep polling until Ctrl-C")
    s = sub.add_parser("status", help="what is deployed: function, layer versions, schedules", formatter_class=HELP_FORMATTER)
    _aws_flags(s)
    s.add_argument("--secret-backend", choices=["secretsmanager", "ssm"], default="secretsmanager")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--bucket", help="the bucket given to up, if any (its journal gives the last cycle)")
    rp = sub.add_parser("report", help="the live report over the deployed journal (python -m live report)",
                        formatter_class=HELP_FORMATTER)
    _aws_flags(rp)
    rp.add_argument("--bucket", help="the bucket given to up, if any")
    from live.__main__ import add_report_flags

    add_report_flags(rp, journal_required=False)
    c = sub.add_parser("cost", help="what the bot costs a month at each cadence (docs/cost.md)",
                       formatter_class=HELP_FORMATTER)
    c.add_argument("--cadence", choices=["daily", "15min"], action="append", help="repeatable; default both")
    c.add_argument("--memory", type=int, default=DEFAULT_MEMORY_MB, help="the function's MB")
    c.add_argument("--seconds", type=float, default=None,
                   help="billed seconds per invocation (default 5.9: an uncompiled cold start)")
    c.add_argument("--arch", choices=["x86_64", "arm64"], default="x86_64")
    c.add_argument("--secret-backend", choices=["secretsmanager", "ssm"], default="secretsmanager")
    d = sub.add_parser("down", help="remove what up created (the journal bucket stays)", formatter_class=HELP_FORMATTER)
    _aws_flags(d)
    d.add_argument("--bucket", help="the bucket given to up, if any")
    d.add_argument("--delete-bucket", action="store_true", help="also delete the bucket and the journal in it")
    d.add_argument("--keep-secret", action="store_true", help="leave the Alpaca keys in the secret store")
    for choice in sub._choices_actions:  # each command's --help opens with its one-line summary
        command = sub.choices[choice.dest]
        command.description = command.description or f"{choice.help[0].upper()}{choice.help[1:]}."
    return parser


def _parse_env(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UserError(f"--env needs NAME=VALUE, got {pair!r}")
        env[name.strip()] = value
    return env


def _bundle(args: argparse.Namespace):
    from deploy.strategy_bundle import strategy_bundle

    return strategy_bundle(getattr(args, "config", None), getattr(args, "strategy", None),
                           getattr(args, "param", None), getattr(args, "name", None))


def config_from(args: argparse.Namespace, bundle=None) -> DeployConfig:
    """The deploy settings; with ``bundle`` (build/up) the function runs the packed config, on its cadence's schedule."""
    from deploy.schedule import schedules_for
    from deploy.strategy_bundle import CONFIG_NAME

    get = lambda name, default=None: getattr(args, name, default)  # noqa: E731
    env = _parse_env(get("env", []) or [])
    schedules = None
    if bundle is not None:
        schedules = schedules_for(bundle.config.cadence, env)
        clash = sorted(k for k in env if k == "STRATEGY" or k.startswith(("STRATEGY_", "CADENCE", "DECISION_TIME"))
                       and k != "STRATEGY_TIMEOUT_SECONDS")  # decide()'s time budget: a runtime setting
        if clash:
            raise UserError(f"--env {clash[0]} would make the function disagree with its config; change the config "
                            f"(--config/--strategy/--param) instead")
        env["STRATEGY_CONFIG"] = CONFIG_NAME
        if bundle.strategy_sha256:  # shown by `deploy status`; the packed config checks the file against it
            env["STRATEGY_SHA256"] = bundle.strategy_sha256
    live = bool(get("live", False))
    if args.command == "up":
        _trading_mode(env, live, get("broker", "alpaca"))
    return DeployConfig(
        function_name=args.function_name, region=args.region, profile=args.profile, endpoint_url=args.endpoint_url,
        arch=get("arch", "x86_64"), memory_mb=get("memory", DEFAULT_MEMORY_MB), timeout_s=get("timeout", DEFAULT_TIMEOUT_S),
        **({"schedules": schedules} if schedules else {}), timezone=get("timezone", DEFAULT_TIMEZONE),
        bucket=get("bucket"), role_arn=get("role_arn"), env=env,
        secret_backend=get("secret_backend", "secretsmanager"), broker=get("broker", "alpaca"),
        market_data=_market_data(get("market_data"), bundle), alarm_email=get("alarm_email"),
        strategy_universe=bundle.config.universe if bundle is not None else None,
        **({"journal_prefix": LIVE_JOURNAL_PREFIX} if live else {}))


def _market_data(flag: str | None, bundle) -> str:
    """``--market-data``, else the config's ``market_data``, else yfinance."""
    if flag:
        return flag
    named = getattr(getattr(bundle, "config", None), "market_data", None)
    return named or DEFAULT_MARKET_DATA


def _trading_mode(env: dict[str, str], live: bool, broker: str) -> None:
    """Paper unless ``--live``: real money is chosen by that one flag, never by a stray ``--env``.

    >>> env = {}; _trading_mode(env, False, "alpaca"); env
    {'APCA_PAPER': 'true'}
    >>> env = {}; _trading_mode(env, True, "alpaca"); env
    {'APCA_PAPER': 'false', 'TRADING_ENABLED': 'true'}
    >>> _trading_mode({"APCA_PAPER": "false"}, False, "alpaca")
    Traceback (most recent call last):
    ...
    clitools.UserError: --env APCA_PAPER=false: real money is chosen with --live (it asks for confirmation)
    """
    paper = env.get("APCA_PAPER", "true").strip().lower()
    if not live:
        if paper not in ("true", "1", "yes", "on"):
            raise UserError(f"--env APCA_PAPER={env['APCA_PAPER']}: real money is chosen with --live "
                            "(it asks for confirmation)")
        env["APCA_PAPER"] = "true"  # explicit, so an `up` without --live after a live one goes back to paper
        return
    if broker != "alpaca":
        raise UserError("--live trades through Alpaca: drop --broker paper")
    if "APCA_PAPER" in env or env.get("TRADING_ENABLED", "true").strip().lower() not in ("true", "1", "yes", "on"):
        raise UserError("--live sets APCA_PAPER=false and TRADING_ENABLED=true itself: drop those --env settings "
                        "(to stop trading, use deploy pause)")
    env["APCA_PAPER"] = "false"
    env["TRADING_ENABLED"] = "true"


def _confirm_live(args: argparse.Namespace, cfg: DeployConfig, who) -> None:
    """``--live`` goes ahead with ``--yes``, or when someone types the function's name at a terminal."""
    if not args.live or args.yes:
        return
    if not sys.stdin.isatty():
        raise UserError("--live trades real money: run it on a terminal to confirm, or pass --yes")
    sys.stderr.write(f"LIVE: {cfg.function_name} will trade REAL MONEY through Alpaca's live API ({who}), with the "
                     f"keys in {cfg.secret_name if cfg.secret_backend != 'ssm' else cfg.ssm_parameter}, its own "
                     f"journal and ledger under {cfg.journal_prefix}.\nType the function name "
                     f"({cfg.function_name}) to go live: ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip()
    if answer != cfg.function_name:
        raise UserError("not confirmed: nothing was built or changed")


def _build_options(args: argparse.Namespace, bundle):
    from deploy.build import BuildOptions

    return BuildOptions(out_dir=args.out, python_version=args.python_version, arch=args.arch, source=args.source,
                        compile_bytecode=args.compile, strip=not args.no_strip, budget_mb=args.budget_mb,
                        extra_files=dict(bundle.files), extra_third_party=bundle.third_party)


def _build(args: argparse.Namespace, bundle):
    from deploy.artifacts import fingerprint, record_layer
    from deploy.build import build

    opts = _build_options(args, bundle)
    print(f"building for python{opts.python_version} {opts.arch} from {opts.source} ...", file=sys.stderr)
    result = build(opts)
    # `up` reuses this layer when it asks for the same (deploy.artifacts)
    record_layer(result.layer_zip, fingerprint(opts, result.manifest.third_party))
    print(f"function.zip: {', '.join(result.manifest.packages)} ({len(result.manifest.files)} files); "
          f"left out: {', '.join(f'{k} ({v})' for k, v in result.manifest.excluded.items()) or 'nothing'}")
    print(f"layer: {', '.join(result.layer.roots)} and their dependencies; slimmed "
          f"{result.layer.unzipped_before_slim / 1048576:.1f} MB -> {result.layer.unzipped / 1048576:.1f} MB")
    print(result.table.render())
    return result


def _default_build_choices(args: argparse.Namespace) -> str | None:
    """``up`` without ``--arch``/``--compile`` takes them from the newest built layer; ``build`` from the defaults.

    Returns the sentence saying where they came from (None for ``build``)."""
    if args.command != "up" or getattr(args, "function_zip", None):  # given zips: their arch is --arch's
        args.arch = args.arch or DEFAULT_ARCH
        args.compile = bool(args.compile)
        return None
    from deploy.artifacts import built_layers

    built = built_layers(args.out, args.python_version)
    given = args.arch is not None and args.compile is not None
    matching = [b for b in built if (args.arch is None or b.fingerprint.arch == args.arch)
                and (args.compile is None or b.fingerprint.compile_bytecode == args.compile)]
    # each option not given follows the newest layer built with the given ones, else the newest at all
    pick = None if given else (matching or built or [None])[0]
    args.arch = args.arch or (pick.fingerprint.arch if pick else DEFAULT_ARCH)
    if args.compile is None:
        args.compile = pick.fingerprint.compile_bytecode if pick else False
    if given:
        return None
    chosen = f"--arch {args.arch} {'--compile' if args.compile else '--no-compile'}"
    if pick is None:
        return (f"{chosen}: no built layer in {args.out} to follow (with --compile the cold start is 1.8 s "
                f"instead of 5.9 s, docs/deploy.md)")
    return f"{chosen}: {'as' if pick in matching else 'the rest as'} {pick.zip_path} was built"


def _up(args: argparse.Namespace, bundle, cfg: DeployConfig, choices: str | None) -> int:
    """``up``: check access, confirm --live, reuse or build the zips, then create or update everything."""
    from deploy.up import Artifacts, plan, plan_summary, up

    if bool(args.function_zip) != bool(args.layer_zip):
        raise UserError("--function-zip and --layer-zip go together")
    opts = _build_options(args, bundle)
    if args.dry_run:
        from deploy.artifacts import prepare

        notes = ([f"{args.function_zip} and {args.layer_zip} (given)"] if args.function_zip
                 else prepare(opts, dry_run=True).notes)
        artifacts = Artifacts(args.function_zip, args.layer_zip) if args.function_zip else \
            Artifacts(opts.function_zip, opts.layer_zip)
        print("plan (dry run, nothing called):")
        lines = plan_summary(cfg, bundle, [*([choices] if choices else []), *notes], args.config) + plan(cfg, artifacts)
        print("\n".join("  " + line for line in lines))
        return 0
    from deploy.preflight import check_access

    who = check_access(cfg)  # before anything is built: no credentials is one line within seconds
    _confirm_live(args, cfg, who)
    if args.function_zip:
        artifacts = Artifacts(args.function_zip, args.layer_zip)
    else:
        from deploy.artifacts import prepare

        if choices:
            print(f"build       {choices}")
        prepared = prepare(opts, say=lambda line: print(line, file=sys.stderr, flush=True))
        for note in prepared.notes:
            print(f"artifact    {note}")
        print(prepared.table.render())
        artifacts = Artifacts(prepared.function_zip, prepared.layer_zip)
    steps = up(cfg, artifacts)
    print(f"aws         {who}")  # with the steps: a refused `up` prints its one error line and nothing else
    for step in steps:
        print(step)
    return 0


def main(argv: list[str] | None = None) -> int:
    from deploy.aws import aws_errors  # noqa: F401  (import check: boto3 present)

    args = make_parser().parse_args(argv)
    if args.command == "cost":
        from deploy.cost import report as cost_report

        print(cost_report(args.cadence, args.memory, args.seconds, args.arch, args.secret_backend))
        return 0
    choices = _default_build_choices(args) if args.command in ("build", "up") else None
    # build and up pack the strategy: read its config (and a user's file) once for the zip and the schedule
    bundle = _bundle(args) if args.command in ("build", "up") else None
    if args.command == "build":
        _build(args, bundle)
        return 0
    cfg = config_from(args, bundle)
    if args.command == "up":
        return _up(args, bundle, cfg, choices)
    if args.command in ("pause", "resume"):
        from deploy.pause import set_paused

        for step in set_paused(cfg, paused=args.command == "pause"):
            print(step)
        return 0
    if args.command == "status":
        from deploy.status import render, status

        state = status(cfg)
        print(json.dumps(state, indent=2, default=str) if args.json else render(state))
        return 0
    if args.command == "report":
        from deploy.report import report

        return report(cfg, args.since, args.out, drift=not args.no_drift)
    if args.command == "down":
        from deploy.down import down

        for step in down(cfg, delete_bucket=args.delete_bucket, delete_secret=not args.keep_secret):
            print(step)
        return 0
    if args.command == "invoke":
        from deploy.ops import invoke

        try:
            event = json.loads(args.event)
        except ValueError as exc:
            raise UserError(f"--event is not JSON: {exc}") from None
        print(json.dumps(invoke(cfg, event), indent=2, default=str))
        return 0
    if args.command == "logs":
        from deploy.ops import log_events

        for line in log_events(cfg, args.since, follow=args.follow):
            print(line, flush=True)
        return 0
    raise UserError(f"unknown command {args.command!r}")


def run(argv: list[str] | None = None) -> int:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    def main_with_hints(args: list[str] | None) -> int:
        try:
            return main(args)
        except NoCredentialsError:
            raise UserError("no AWS credentials found: pass --profile NAME, or set AWS_PROFILE or "
                            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY") from None
        except NoRegionError:
            raise UserError("no AWS region: pass --region (e.g. us-east-1) or set AWS_DEFAULT_REGION") from None

    return guarded(main_with_hints, BotoCoreError, ClientError, FileNotFoundError, LookupError, OSError)(argv)


if __name__ == "__main__":
    sys.exit(run())
