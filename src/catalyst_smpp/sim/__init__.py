"""An SMSC simulator for tests, benchmarks and operators (``catalyst-smpp smsc-sim``)."""

from catalyst_smpp.sim.config import DelayRange, SimConfig
from catalyst_smpp.sim.ids import IdForm, IdFormat
from catalyst_smpp.sim.server import SmscSimulator, open_simulator
from catalyst_smpp.sim.stats import SimStats
from catalyst_smpp.sim.store import AssembledMessage, StoredMessage

__all__ = [
    "AssembledMessage",
    "DelayRange",
    "IdForm",
    "IdFormat",
    "SimConfig",
    "SimStats",
    "SmscSimulator",
    "StoredMessage",
    "open_simulator",
]
