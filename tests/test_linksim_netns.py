"""Root-only: a call between the host and a network namespace over a tbf + nftables link."""

from __future__ import annotations

import asyncio
import json
import socket
import sys

import numpy as np
import pytest

from streamcodec.linksim.netns import NetnsLink, NetnsLinkConfig, unavailable_reason
from streamcodec.transport import Call, CallConfig, PacketiserConfig, PeerConfig
from streamcodec.transport.signalling import SignallingServer, SignallingServerConfig
from streamcodec.transport.toycodec import ToyCodec

REASON = unavailable_reason()

# the peer inside the namespace: joins the room, sends 3 s, prints what it received
INNER = """
import asyncio, json, sys
import numpy as np
from streamcodec.transport import Call, CallConfig, PacketiserConfig, PeerConfig
from streamcodec.transport.toycodec import ToyCodec

async def main():
    cfg = CallConfig(packetiser=PacketiserConfig(link_budget_bps=16000),
                     peer=PeerConfig(host_addresses=(sys.argv[2],), open_timeout_s=60.0),
                     end_wait_s=1.0)
    call = await Call.join(sys.argv[1], "ns", ToyCodec(28, 40), cfg)
    x = (0.3 * np.sin(np.arange(48000) * 0.05)).astype(np.float32)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    async def send():
        for i in range(0, x.size, 320):
            await call.send_pcm(x[i:i + 320])
            await asyncio.sleep(max(t0 + (i + 320) / 16000 - loop.time(), 0))
        await call.end_input()
    _, out = await asyncio.gather(send(), call.receive_all(30))
    rx = call.stats().rx
    print(json.dumps({"samples": int(out.size), "received": rx.packets_received,
                      "expected": rx.packets_expected, "lost": rx.packets_lost}))
    await call.close()

asyncio.run(main())
"""


def test_config_validation():
    with pytest.raises(ValueError, match="burst_bytes"):
        NetnsLinkConfig(burst_bytes=500)  # would drop the 810 B DTLS flight: never connects
    with pytest.raises(ValueError, match="loss_pct"):
        NetnsLinkConfig(loss_pct=101)


@pytest.mark.skipif(REASON is not None, reason=f"namespace link unavailable: {REASON}")
def test_call_across_a_shaped_lossy_veth_pair():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main(link: NetnsLink):
        server = SignallingServer(SignallingServerConfig(host=link.host_address, port=port))
        await server.start()
        url = f"ws://{link.host_address}:{port}"
        inner = await asyncio.create_subprocess_exec(
            *link.exec_prefix, sys.executable, "-c", INNER, url, link.ns_address,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        cfg = CallConfig(
            packetiser=PacketiserConfig(link_budget_bps=16000),
            # 10% loss can drop DTLS handshake flights, whose retransmission backs off
            # (1, 2, 4 ... s): the default 20 s was too short once in a loaded CI run
            peer=PeerConfig(host_addresses=(link.host_address,), open_timeout_s=60.0),
            end_wait_s=1.0,
        )
        call = await Call.join(url, "ns", ToyCodec(28, 40), cfg)
        x = (0.3 * np.cos(np.arange(48000) * 0.03)).astype(np.float32)

        async def send():
            for i in range(0, x.size, 320):
                await call.send_pcm(x[i : i + 320])
                await asyncio.sleep(0.02)
            await call.end_input()

        _, out = await asyncio.gather(send(), call.receive_all(30))
        stats = call.stats()
        await call.close()
        stdout, stderr = await asyncio.wait_for(inner.communicate(), 30)
        await server.close()
        return out, stats, inner.returncode, stdout.decode(), stderr.decode()

    with NetnsLink(NetnsLinkConfig(rate_bps=16000, loss_pct=10)) as link:
        out, stats, rc, stdout, stderr = asyncio.run(main(link))
        dropped = link.dropped_packets()
    assert rc == 0, stderr
    inner = json.loads(stdout.strip().splitlines()[-1])
    assert inner["received"] > 0 and inner["samples"] > 16000
    assert inner["received"] + inner["lost"] == inner["expected"]
    assert out.size > 16000 and stats.rx.packets_received > 0
    assert dropped > 5  # 10% of a few hundred datagrams (data, SACKs, STUN) each way
