"""The XOR acker: a pure ledger of tuple trees and the rotating map that expires them."""

from acker.ledger import AckerLedger, Outcome
from acker.rotating import RotatingMap

__all__ = ["AckerLedger", "Outcome", "RotatingMap"]
