"""Token transport over WebRTC data channels (aiortc) with websockets signalling.

Entry points::

    from streamcodec.transport import Call, SignallingServer
    call = await Call.join("ws://127.0.0.1:8765", "room", codec)

Modules: ``packets`` (wire format), ``packetiser`` (frames per message from a link
budget, pacing, DTX), ``overhead`` (wire-cost model), ``jitter`` (playout, loss
concealment, counters), ``peer`` (aiortc data-channel peer), ``signalling``
(websockets server and client), ``session`` (the app-facing :class:`Call`),
``track`` (aiortc ``MediaStreamTrack`` adapters), ``vad`` (energy VAD for DTX).
"""

from streamcodec.transport.jitter import JitterBuffer, JitterConfig, JitterStats, PlayoutFrame
from streamcodec.transport.overhead import OverheadModel
from streamcodec.transport.packetiser import (
    Packetiser,
    PacketiserConfig,
    PacketPlan,
    plan_packets,
)
from streamcodec.transport.packets import PACKET_VERSION, Packet, PacketError, encode, parse
from streamcodec.transport.peer import DatagramTap, IceServer, Peer, PeerConfig
from streamcodec.transport.session import Call, CallConfig, CallStats, DecodedChunk
from streamcodec.transport.signalling import (
    LocalSignalling,
    Signalling,
    SignallingClient,
    SignallingError,
    SignallingServer,
    SignallingServerConfig,
)
from streamcodec.transport.streamconfig import StreamConfig
from streamcodec.transport.vad import EnergyVad, VadConfig

__all__ = [
    "PACKET_VERSION",
    "Call",
    "CallConfig",
    "CallStats",
    "DatagramTap",
    "DecodedChunk",
    "EnergyVad",
    "IceServer",
    "JitterBuffer",
    "JitterConfig",
    "JitterStats",
    "LocalSignalling",
    "OverheadModel",
    "Packet",
    "PacketError",
    "PacketPlan",
    "Packetiser",
    "PacketiserConfig",
    "Peer",
    "PeerConfig",
    "PlayoutFrame",
    "Signalling",
    "SignallingClient",
    "SignallingError",
    "SignallingServer",
    "SignallingServerConfig",
    "StreamConfig",
    "VadConfig",
    "encode",
    "parse",
    "plan_packets",
]
