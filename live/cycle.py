"""One trading cycle, top to bottom: ``run()`` is what the Lambda handler and ``python lambda_function.py`` call.
``run()`` reads top to bottom: configuration, market clock and trading window, reconciliation, whether the
cadence makes a decision now, history of universe plus holdings, the same ``Strategy.decide`` call the backtest
makes, the shared rulebook (``strategies.rules``), idempotent submission, journal, summary. Settings come from
environment variables and ``STRATEGY_CONFIG`` (docs/live.md).

Daily cadence: one decision per trading day, at or after the decision time (15:45 New York by default; earlier on
early-close days). A cycle before it, or after the day's decision was made, reconciles and reports but never
trades. Order ids are derived from strategy, decision date, symbol and side, and existing ids are never resubmitted,
so a retried or doubled cycle sends nothing twice.

Intraday cadence (``15min``): one decision per slot of the trading window, on the bars complete at the slot, with
ids keyed by date and slot and a daybook mark per slot (``live.schedule``).
"""


from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from brokers.base import BrokerError
from brokers.calendar import MarketCalendar
from live.components import candidate_universe, make_broker, make_provider
from live.config import ConfigError, InputError, LiveConfig, StrategyLoadError, default_state_dir
from live.daybook import DaybookError, make_daybook
from live.history import load_history
from live.event import read_event
from live.journal import make_journal
from live.lease import LeaseBusy, LeaseError, LeaseLost, LeaseSettings, open_lease, require_durable_home
from live.ledger import LedgerError, open_ledger
from live.logs import log, setup_logging
from live.orders import plan_records, submit_idempotently, to_request
from live.outcome import conclude, trading_status
from live.reconcile import reconcile
from live.record import CycleRecord
from live.time_budget import budget_seconds, call_with_budget
from live.schedule import (closed_reason, decision_due, decision_key, decision_missed, new_york, parse_moment,
                           slot_of)
from live.secrets import load_alpaca_keys, secret_values
from marketdata.errors import DataError
from strategies.base import Position, StrategyError, as_decision, last_prices
from strategies.rules import plan_orders, skipped_records


def run(event: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None, *,
        deadline: float | None = None) -> dict[str, Any]:
    """One trading cycle; returns a JSON-serialisable summary whose ``status`` is one of
    traded | no_change | refused | market_closed | dry_run | busy | error | unrecorded (live.record). Never raises for
    expected failures: a malformed event, too, is an input error with a journaled summary.

    ``deadline``: when the invocation ends, as a ``time.monotonic()`` value (the Lambda handler passes it); the
    strategy's ``decide()`` must return well before it (``live.time_budget``)."""
    raw_event, event = event, {}
    env = dict(os.environ if env is None else env)
    logger = setup_logging()  # LOG_LEVEL applies once the configuration is read
    record = CycleRecord(now=dt.datetime.now(dt.timezone.utc))
    record.function = env.get("AWS_LAMBDA_FUNCTION_NAME") or "local"
    record.notify_topic = env.get("NOTIFY_TOPIC_ARN", "").strip() or None
    secrets: list[str] = []
    journal = lease = None
    try:
        # 1. Configuration and secrets (the keys stay in this frame; logs and journal redact them anyway).
        config = record.config = LiveConfig.from_env(env)
        if config.sandboxed:  # Prophet imports matplotlib, which wants a writable config folder
            os.environ.setdefault("MPLCONFIGDIR", str(config.state_dir / "matplotlib"))
        keys = load_alpaca_keys(env) if "alpaca" in (config.broker, config.market_data) else None
        secrets = secret_values(keys)
        logger = setup_logging(config.log_level, secrets)
        _check_journal_home(config.journal)
        journal = make_journal(config.journal, secrets)
        strategy = config.build_strategy()
        name = record.strategy = strategy.name  # the config's name for a variant, else the class's
        event, asked = read_event(raw_event)  # strict: a dry_run that is not plainly true or false trades nothing
        record.dry_run = asked or not config.trading_enabled
        record.dry_run_reason = "dry run requested" if asked else (config.trading_enabled_reason or None)
        if event.get("now") is not None:
            if config.broker != "paper" and not record.dry_run:
                raise ConfigError("a replayed 'now' is honoured only with the paper broker or a dry run")
            record.now, record.replayed = parse_moment(event["now"]), True
        record.inputs["config"] = config.describe()
        # One cycle per strategy at a time, across containers: adjacent slots would otherwise both buy the book.
        require_durable_home(config.journal, in_lambda=bool(env.get("AWS_LAMBDA_FUNCTION_NAME")),
                             broker=config.broker, dry_run=record.dry_run)
        if not record.dry_run:  # a dry run only reads and reports: it takes no lease, so it never makes a real cycle busy
            lease = open_lease(config.journal, name, LeaseSettings.from_env(env))
            lease.acquire()
            record.lease = lease.where
        # MARKET_DATA=alpaca: the same keys as trading (only then passed, so a stand-in provider keeps its shape)
        provider = make_provider(config, keys=keys, env=env) if config.market_data == "alpaca" else make_provider(config)
        try:
            broker = make_broker(config, provider, record.now if record.replayed else None, keys, env)
        except BrokerError as exc:  # an unopenable paper database is a setting to fix, not a failed cycle
            if config.broker != "paper":
                raise
            raise ConfigError(f"PAPER_DB: {exc}") from None
        record.broker = broker.name
        clock = None if record.replayed else broker.clock()
        if clock is not None:
            record.now = clock.now  # the broker's time, not this machine's
        now = record.now = new_york(record.now)
        record.trading_date, record.slot = now.date(), slot_of(now)
        log(logger, "cycle_start", cycle_id=record.cycle_id, now=now.isoformat(), replayed=record.replayed,
            dry_run=record.dry_run, broker=broker.name)

        # 2. Market clock and trading window: holidays, weekends and early closes come from the exchange calendar.
        calendar = MarketCalendar()
        if record.replayed and config.broker != "paper":  # a dry-run replay on Alpaca: Alpaca's today is not then
            sessions = calendar.sessions(now.date(), now.date())
        else:
            sessions = broker.calendar(now.date(), now.date())
        session = sessions[0] if sessions else None
        reason = closed_reason(now, session, config.trade_after_open_minutes, config.trade_before_close_minutes)
        if reason is None and clock is not None and not clock.is_open:
            reason = "the broker's clock says the market is closed"
        if reason is not None:
            log(logger, "market_closed", reason=reason)
            return _finish(record, journal, logger, secrets, "market_closed", reason=reason)

        # 3. Reconcile: cancel this strategy's stale open orders; symbols with open orders sit this cycle out.
        #    The strategy sees only its own positions (its ledger, capped by the broker's) and only its own legs.
        ledger = record.ledger = open_ledger(config.journal, name)
        # no ledger write, cancel or submit without the lease (live.lease: fencing); a dry run holds none and
        # writes nothing
        fence = lease.fence if lease is not None else _no_fence
        ledger.fence = fence
        ledger.bind(broker.name, broker.account().id, journal=config.journal)  # refuses another account's ledger
        ledger.sync(broker, now)
        fence()  # before cancelling anything
        reconciled = reconcile(broker, name, now, config.stale_order_minutes, our_legs=ledger.leg_ids(),
                               dry_run=record.dry_run)  # a dry run cancels nothing
        account, broker_positions = broker.account(), broker.positions()
        view = ledger.against(broker_positions)
        positions = view.positions
        record.ledger_view = {**view.describe(), "new_fills": ledger.new_fills}
        if view.shortfalls:
            log(logger, "ledger_shortfall", logging.WARNING, shortfalls=view.shortfalls)
        record.inputs.update(reconcile=reconciled.describe(), account=account, positions=positions,
                             broker_positions=broker_positions)
        log(logger, "reconciled", canceled=len(reconciled.canceled), open_symbols=sorted(reconciled.open_symbols),
            positions={s: p.qty for s, p in positions.items()}, cash=account.cash)

        # 4. The cadence: one decision per trading day, at or after its decision time; other cycles only report.
        daybook = make_daybook(config.journal, name)
        window_minutes = (config.trade_after_open_minutes, config.trade_before_close_minutes)
        key = decision_key(now, session, config.cadence, *window_minutes)  # the date, or the intraday slot
        wait = decision_due(now, session, config.cadence, daybook.decided(key), *window_minutes)
        record.decision = {"due": wait is None, "reason": wait, **config.cadence.to_dict()}
        if wait is not None:
            log(logger, "no_decision", reason=wait)
            return _finish(record, journal, logger, secrets, "no_change", reason=wait)

        # 5. History of universe plus holdings, the backtest's window, up to today.
        universe = candidate_universe(config)
        history = load_history(provider, universe, sorted(positions), now.date(),
                               calendar.previous_session(now.date()), strategy, at=getattr(key, "at", now))
        record.provenance = {"data": history.data.provenance, "strategy": strategy.describe(),
                             "rules": config.rules.to_dict(), "broker": broker.name,
                             "universe": universe, "unpriced_holdings": history.unpriced,
                             "unavailable_symbols": history.unavailable}
        if history.unpriced or history.unavailable:
            log(logger, "symbols_unavailable", logging.WARNING, universe=history.unavailable, holdings=history.unpriced)

        # 6. The decision: the very call Backtrader's next() makes, checked against the contract.
        held = {s: Position(p.qty, p.avg_entry_price) for s, p in positions.items() if p.qty > 0}
        cash = max(0.0, min(account.cash, account.buying_power))
        closes = history.data.closes
        strategy.candidates = universe  # a holding outside the universe is evaluated, never ranked
        prices = last_prices(closes)  # what the rulebook sizes and prices with, and what CAPITAL counts exposure at
        cash = config.rules.spendable(cash, _committed(held, reconciled.our_open_buys), prices)  # CAPITAL
        budget = budget_seconds(config.strategy_timeout_seconds, deadline)
        decided = call_with_budget(lambda: strategy.decide(closes, held, cash), seconds=budget)
        decision = as_decision(decided, strategy, closes, held)
        record.signals = {s: {"price": sig.price, "forecast": sig.forecast, "decision": sig.action,
                              "reason": sig.reason, "in_universe": sig.in_universe}
                          for s, sig in decision.signals.items() if hasattr(sig, "action")}

        # 7. The shared rulebook: sells first, buys sized on today's buying power, limits, stops as brackets.
        planned, notes = plan_orders(decision, held, cash, prices, config.rules, universe=universe,
                                     open_symbols=reconciled.open_symbols, costs=config.execution.costs)
        record.skipped = skipped_records(notes)
        record.inputs.update(as_of=decision.as_of, decision_universe=decision.universe,
                             target_weights=decision.target_weights, intents=decision.orders)
        log(logger, "decided", as_of=str(decision.as_of.date()), orders=len(planned),
            buys=[o.symbol for o in planned if o.side == "buy"], sells=[o.symbol for o in planned if o.side == "sell"])

        # 8. Idempotent submission: an id that exists at the broker is reported, never sent again.
        slot = config.cadence.slot_number(key.at) if config.cadence.intraday else None
        requests = [(to_request(o, name, now.date(), slot), o.intent) for o in planned]
        if requests and not record.dry_run:  # write-ahead: a cycle killed after sending leaves the names behind
            ledger.plan([request for request, _ in requests])
            ledger.save()
        record.orders, failure = submit_idempotently(broker, requests, dry_run=record.dry_run, exits=reconciled.exits,
                                                     on_order=ledger.record, fence=fence)
        record.plan = plan_records(record.orders, record.skipped)
        for order in record.orders:
            log(logger, "order", **{k: order.get(k) for k in ("symbol", "side", "qty", "client_order_id", "status", "new")})
        if failure is not None:
            raise failure
        if not record.dry_run:  # the day is decided: later cycles today only reconcile and report
            try:
                fence()
                daybook.mark(key, {"cycle_id": record.cycle_id, "at": now.isoformat(),
                                   "orders": [o["client_order_id"] for o in record.orders]})
            except LeaseLost:
                raise
            except Exception as exc:  # noqa: BLE001 - the orders are out: report them, as unrecorded
                record.daybook_error = f"daybook write failed: {_line(exc)}"
                log(logger, "daybook_error", logging.ERROR, message=record.daybook_error)
        status = trading_status(record.orders, dry_run=record.dry_run)
        if status == "refused":
            log(logger, "all_orders_refused", logging.ERROR, orders=len(record.orders))
        return _finish(record, journal, logger, secrets, status)
    except LeaseBusy as exc:
        log(logger, "busy", logging.WARNING, reason=str(exc))
        return _finish(record, journal, logger, secrets, "busy", reason=str(exc))
    except LeaseLost as exc:  # taken over after it expired: the new holder owns the ledger and the day now
        if record.ledger is not None:
            record.ledger.dirty = False
        return _fail(record, journal, logger, secrets, "lease_lost", exc)
    except LeaseError as exc:
        return _fail(record, journal, logger, secrets, "lease", exc)
    except LedgerError as exc:
        return _fail(record, journal, logger, secrets, "ledger", exc)
    except DaybookError as exc:  # an unreadable mark: whether today was decided is unknown, so nothing is decided
        return _fail(record, journal, logger, secrets, "daybook", exc)
    except StrategyLoadError as exc:  # the strategy's file raised at import: journaled where the config says
        return _fail(record, journal or _journal_of(env), logger, secrets, "strategy", exc)
    except ConfigError as exc:
        return _fail(record, journal, logger, secrets, "config", exc)
    except BrokerError as exc:
        return _fail(record, journal, logger, secrets, "broker", exc)
    except DataError as exc:
        return _fail(record, journal, logger, secrets, "data", exc)
    except StrategyError as exc:  # a decide() that raised its own error or returned junk: nothing is traded
        return _fail(record, journal, logger, secrets, "strategy", exc)
    except InputError as exc:  # e.g. a malformed 'now' in the event
        return _fail(record, journal, logger, secrets, "input", exc)
    except Exception as exc:  # a bug: still journal and answer, so the next cycle starts from a known record
        logger.exception("unexpected_error")
        return _fail(record, journal, logger, secrets, "internal", exc)
    finally:
        if lease is not None:
            try:
                lease.release()
            except Exception as exc:  # noqa: BLE001 - the summary is written; an unreleased lease expires
                log(logger, "lease_release_failed", logging.WARNING, message=str(exc))


def _committed(held: dict[str, Position], open_buys: Mapping[str, int]) -> dict[str, Position]:
    """The strategy's holdings plus the unfilled shares of its own open buys: what its capital already pays for."""
    out = dict(held)
    for symbol, qty in open_buys.items():
        have = out.get(symbol)
        out[symbol] = Position((have.qty if have else 0) + qty, have.avg_price if have else 0.0)
    return out


def _check_journal_home(journal: str) -> None:
    """A local journal's folder must exist or be creatable: otherwise every cycle would end ``unrecorded``."""
    if journal.startswith("s3://"):
        return
    path = Path(journal)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"JOURNAL: cannot create the folder {path.parent}: {exc.strerror or exc}") from None


def _journal_of(env: Mapping[str, str]):
    """The journal ``JOURNAL``/``STATE_DIR`` name, for a failure before the configuration was whole."""
    try:
        state_dir = env.get("STATE_DIR", "").strip() or str(default_state_dir(env))
        return make_journal(env.get("JOURNAL", "").strip() or os.path.join(state_dir, "journal.jsonl"), [])
    except Exception:  # noqa: BLE001 - the error itself is still returned, logged and measured
        return None


def _line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _missed(record: CycleRecord, status: str) -> bool:
    """Whether this cycle was the last chance of a decision that is still unmade (the ``DecisionsMissed``
    metric), judged on the exchange calendar and the daybook whatever ended the cycle; an unreadable mark counts
    as missed. A dry run, or a cycle without a configuration, misses nothing."""
    config = record.config
    if config is None or record.dry_run or status == "dry_run" or not record.strategy:
        return False
    try:
        now = new_york(record.now)
        session = MarketCalendar().session(now.date())
        if session is None:
            return False
        window_minutes = (config.trade_after_open_minutes, config.trade_before_close_minutes)
        if not decision_missed(now, session, config.cadence, None, *window_minutes):
            return False  # not the last chance: a retry is still to come, or nothing is due
        key = decision_key(now, session, config.cadence, *window_minutes)
        return make_daybook(config.journal, record.strategy).decided(key) is None
    except Exception:  # noqa: BLE001 - cannot tell: say missed, so the alarm asks a human
        return True


def _no_fence() -> None:
    """A dry run's fence: it holds no lease because it writes and sends nothing."""


def _fail(record, journal, logger, secrets, kind: str, exc: BaseException) -> dict[str, Any]:
    message = _line(exc)
    if kind == "internal":
        message = f"{type(exc).__name__}: {message}"
    log(logger, "cycle_error", logging.ERROR, kind=kind, message=message)
    return _finish(record, journal, logger, secrets, "error", error={"type": kind, "message": message})


def _finish(record, journal, logger, secrets, status: str, **extra: Any) -> dict[str, Any]:
    record.decision_missed = _missed(record, status)
    if record.decision_missed:
        log(logger, "decision_missed", logging.ERROR, status=status, now=new_york(record.now).isoformat())
    # ledger, notification, journal, metric line: a failed write makes the status `unrecorded` (live.outcome)
    return conclude(record, journal, logger, secrets, status, **extra)
