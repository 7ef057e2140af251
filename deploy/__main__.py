"""``python -m deploy build|up|invoke|logs|status|report|down``: one repeatable command to run the strategy in AWS Lambda.

See docs/deploy.md. Every AWS command takes --region, --profile and --endpoint-url (moto, LocalStack).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clitools import OneLineErrorParser, UserError, guarded
from deploy.config import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, DEFAULT_TIMEZONE, DeployConfig

HELP_FORMATTER = argparse.ArgumentDefaultsHelpFormatter


def _aws_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("AWS")
    g.add_argument("--function-name", default="prophettrend", help="names every resource (layer, role, schedule...)")
    g.add_argument("--region", help="AWS region (default: the profile's or AWS_REGION)")
    g.add_argument("--profile", help="AWS named profile")
    g.add_argument("--endpoint-url", help="send every AWS call here (moto server, LocalStack)")


def _build_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("build")
    g.add_argument("--arch", choices=["x86_64", "arm64"], default="x86_64", help="Lambda architecture")
    g.add_argument("--python-version", default="3.12", help="Lambda runtime's Python (the layer's wheels)")
    g.add_argument("--source", choices=["index", "installed"], default="index",
                   help="layer from the package index (any arch) or copied from this machine's site-packages "
                        "(only for this machine's Python and arch)")
    g.add_argument("--compile", action="store_true", help="precompile bytecode with a real interpreter of --python-version")
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
    g.add_argument("--market-data", default="yfinance", help="the function's MARKET_DATA (sample, yfinance, csv:PATH)")
    g.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra function environment, repeatable")
    g.add_argument("--alarm-email", help="mail the CloudWatch alarm to this address (SNS subscription)")
    g.add_argument("--function-zip", type=Path, help="deploy this zip instead of building (with --layer-zip)")
    g.add_argument("--layer-zip", type=Path, help="deploy this layer zip instead of building (with --function-zip)")
    g.add_argument("--dry-run", action="store_true", help="print the plan, call nothing")


def make_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="python -m deploy", description=__doc__, formatter_class=HELP_FORMATTER)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    b = sub.add_parser("build", help="build function.zip and the layer zip, print the size table",
                       formatter_class=HELP_FORMATTER)
    _build_flags(b)
    u = sub.add_parser("up", help="build, then create or update everything (idempotent)", formatter_class=HELP_FORMATTER)
    _aws_flags(u)
    _build_flags(u)
    _deploy_flags(u)
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
    d = sub.add_parser("down", help="remove what up created (the journal bucket stays)", formatter_class=HELP_FORMATTER)
    _aws_flags(d)
    d.add_argument("--bucket", help="the bucket given to up, if any")
    d.add_argument("--delete-bucket", action="store_true", help="also delete the bucket and the journal in it")
    d.add_argument("--keep-secret", action="store_true", help="leave the Alpaca keys in the secret store")
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
    return DeployConfig(
        function_name=args.function_name, region=args.region, profile=args.profile, endpoint_url=args.endpoint_url,
        arch=get("arch", "x86_64"), memory_mb=get("memory", DEFAULT_MEMORY_MB), timeout_s=get("timeout", DEFAULT_TIMEOUT_S),
        **({"schedules": schedules} if schedules else {}), timezone=get("timezone", DEFAULT_TIMEZONE),
        bucket=get("bucket"), role_arn=get("role_arn"), env=env,
        secret_backend=get("secret_backend", "secretsmanager"), broker=get("broker", "alpaca"),
        market_data=get("market_data", "yfinance"), alarm_email=get("alarm_email"))


def _build_options(args: argparse.Namespace, bundle):
    from deploy.build import BuildOptions

    return BuildOptions(out_dir=args.out, python_version=args.python_version, arch=args.arch, source=args.source,
                        compile_bytecode=args.compile, strip=not args.no_strip, budget_mb=args.budget_mb,
                        extra_files=dict(bundle.files), extra_third_party=bundle.third_party)


def _build(args: argparse.Namespace, bundle):
    from deploy.build import build

    opts = _build_options(args, bundle)
    print(f"building for python{opts.python_version} {opts.arch} from {opts.source} ...", file=sys.stderr)
    result = build(opts)
    print(f"function.zip: {', '.join(result.manifest.packages)} ({len(result.manifest.files)} files); "
          f"left out: {', '.join(f'{k} ({v})' for k, v in result.manifest.excluded.items()) or 'nothing'}")
    print(f"layer: {', '.join(result.layer.roots)} and their dependencies; slimmed "
          f"{result.layer.unzipped_before_slim / 1048576:.1f} MB -> {result.layer.unzipped / 1048576:.1f} MB")
    print(result.table.render())
    return result


def main(argv: list[str] | None = None) -> int:
    from deploy.aws import aws_errors  # noqa: F401  (import check: boto3 present)

    args = make_parser().parse_args(argv)
    # build and up pack the strategy: read its config (and a user's file) once for the zip and the schedule
    bundle = _bundle(args) if args.command in ("build", "up") else None
    if args.command == "build":
        _build(args, bundle)
        return 0
    cfg = config_from(args, bundle)
    if args.command == "up":
        from deploy.up import Artifacts, plan, up

        if bool(args.function_zip) != bool(args.layer_zip):
            raise UserError("--function-zip and --layer-zip go together")
        built = _build_options(args, bundle)  # where `build` writes the zips, so `up` finds them under the same names
        artifacts = (Artifacts(args.function_zip, args.layer_zip) if args.function_zip
                     else Artifacts(built.function_zip, built.layer_zip))
        if args.dry_run:
            print("plan (dry run, nothing called):")
            print("\n".join("  " + line for line in plan(cfg, artifacts)))
            return 0
        if not args.function_zip:
            _build(args, bundle)
        for step in up(cfg, artifacts):
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
