"""Optional fill notifications: with ``NOTIFY_TOPIC_ARN`` set, one SNS message per cycle that sent orders or saw
fills of the strategy's orders (the topic the deploy's alarm uses, so one e-mail subscription hears both).

Example:
    >>> message({"strategy": "pt", "cycle_id": "c1", "status": "traded", "trading_date": "2022-06-01",
    ...          "orders": [{"fate": "sent", "symbol": "KO", "side": "buy", "qty": 3}]}, fills=[])[0]
    'ProphetTrend pt: 1 order sent, 0 fills (traded)'
"""

from __future__ import annotations

import json
from typing import Any


def message(summary: dict[str, Any], fills: list[dict]) -> tuple[str, str] | None:
    """Subject and body, or ``None`` when the cycle neither sent orders nor saw fills."""
    sent = [o for o in summary.get("orders") or () if o.get("fate") == "sent"]
    if not sent and not fills:
        return None
    subject = (f"ProphetTrend {summary.get('strategy')}: {len(sent)} order{'s' * (len(sent) != 1)} sent, "
               f"{len(fills)} fill{'s' * (len(fills) != 1)} ({summary.get('status')})")[:100]
    body = {"strategy": summary.get("strategy"), "cycle_id": summary.get("cycle_id"),
            "status": summary.get("status"), "trading_date": summary.get("trading_date"),
            "sent": [{k: o.get(k) for k in ("symbol", "side", "qty", "client_order_id", "status")} for o in sent],
            "fills": fills}
    return subject, json.dumps(body, indent=1, default=str)


def publish(topic_arn: str, summary: dict[str, Any], fills: list[dict]) -> str | None:
    """Publish the cycle's message to ``topic_arn``; the SNS message id, or ``None`` when there was nothing to say."""
    text = message(summary, fills)
    if text is None:
        return None
    import boto3

    region = topic_arn.split(":")[3] if topic_arn.count(":") >= 5 else None
    client = boto3.client("sns", region_name=region or None)
    return client.publish(TopicArn=topic_arn, Subject=text[0], Message=text[1])["MessageId"]
