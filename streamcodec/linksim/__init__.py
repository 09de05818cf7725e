"""Impaired-link simulation for the token transport (``streamcodec simulate``).

An in-process UDP relay sits between two aiortc peers; per direction it applies a rate
cap (drop-tail byte queue drained at the rate), delay, jitter, Bernoulli and
Gilbert-Elliott loss, reordering, duplication and scheduled outages, seeded and
deterministic. ICE, DTLS and SCTP run unchanged end to end; no root, no netem.

Modules: ``link`` (the per-direction model, pure), ``relay`` (the asyncio UDP relay and
SDP rewriting), ``clock`` (a virtual-time event loop: calls run faster than real time),
``scenario`` (one call through a link, measured), ``sweep`` (the grid, reliability and
concurrency runs), ``report`` (plots and Markdown), ``netns`` (root-only variant with
network namespaces, veth, tbf and nftables).

::

    from streamcodec.linksim import LinkConfig, GilbertElliott, LinkRelay
    relay = await LinkRelay(LinkConfig(rate_bps=8000, delay_ms=50,
                                       burst=GilbertElliott.from_loss(0.1, 3))).start()
    a, b = await Call.pair(codec, codec, config, hooks_a=relay.hooks_a, hooks_b=relay.hooks_b)
"""

from streamcodec.linksim.link import (
    DatagramRecord,
    GilbertElliott,
    LinkConfig,
    LinkModel,
    LinkStats,
    Outage,
)
from streamcodec.linksim.relay import LinkRelay, is_dtls_handshake, rewrite_candidates

__all__ = [
    "DatagramRecord",
    "GilbertElliott",
    "LinkConfig",
    "LinkModel",
    "LinkRelay",
    "LinkStats",
    "Outage",
    "is_dtls_handshake",
    "rewrite_candidates",
]
