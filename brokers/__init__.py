"""Where orders go: Alpaca (alpaca-py) and a local SQLite paper broker, behind one interface (``brokers.base``)."""

from brokers.base import (
    Account, Broker, BrokerError, BrokerOrder, BrokerPosition, Clock, DuplicateOrderError, OrderRequest, Session,
)

__all__ = ["Account", "Broker", "BrokerError", "BrokerOrder", "BrokerPosition", "Clock", "DuplicateOrderError",
           "OrderRequest", "Session"]
