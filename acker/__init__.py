"""The XOR acker: a pure ledger of tuple trees (worker/acking.py is the arithmetic's other side)."""

from acker.ledger import AckerLedger, Outcome

__all__ = ["AckerLedger", "Outcome"]
