"""Root-only variant of the impaired link, in the kernel: a network namespace joined to
the host by a veth pair, ``tbf`` rate limiting on both ends and ``nftables`` random loss.

::

    with NetnsLink(NetnsLinkConfig(rate_bps=16000, loss_pct=5)) as link:
        # a peer on the host binds link.host_address; one inside runs under link.exec_prefix
        subprocess.run([*link.exec_prefix, "streamcodec", "call", ...])

Kernel facts (design/notes/TRANSPORT.md §7): ``tc netem`` is often not built (no delay
or jitter here, use :class:`~streamcodec.linksim.relay.LinkRelay` for those); tbf's
``burst`` and ``limit`` must each exceed the largest datagram (the ~810 B DTLS
certificate flight) or the channel never opens; nftables drops on the *input* hook
(dropping on output makes ``sendto()`` fail with EPERM), and the host-side rule is
limited to the veth interface so nothing else on the machine is touched.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

logger = logging.getLogger(__name__)

TOOLS = ("ip", "tc", "nft")


@dataclass(frozen=True)
class NetnsLinkConfig:
    rate_bps: float = 16000.0
    #: random loss on each side's input, whole percent (nftables ``numgen random mod 100``)
    loss_pct: int = 0
    #: tbf bucket and queue, bytes (each must exceed the largest datagram)
    burst_bytes: int = 1600
    limit_bytes: int = 4000
    name: str = "sclink"
    subnet: str = "10.213.7"

    def __post_init__(self) -> None:
        if not self.rate_bps >= 1000:
            raise ValueError(f"rate_bps must be >= 1000, got {self.rate_bps}")
        if not 0 <= self.loss_pct <= 100:
            raise ValueError(f"loss_pct must be in 0..100, got {self.loss_pct}")
        if self.burst_bytes < 1500 or self.limit_bytes < 1500:
            raise ValueError("burst_bytes and limit_bytes must be >= 1500 (the DTLS flight)")
        if not self.name.isalnum() or len(self.name) > 10:
            raise ValueError(f"name must be alphanumeric, at most 10 chars: {self.name!r}")


def unavailable_reason() -> str | None:
    """Why the namespace link cannot run here (``None``: it can)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing tools: {', '.join(missing)} (apt-get install iproute2 nftables)"
    probe = "scprobe"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create network namespaces: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


class NetnsLink:
    """Creates the namespace and the shaped veth pair on enter; removes them on exit."""

    def __init__(self, config: NetnsLinkConfig | None = None) -> None:
        self.config = config or NetnsLinkConfig()
        c = self.config
        self.namespace = f"{c.name}ns"
        self.host_if, self.ns_if = f"{c.name}h", f"{c.name}n"
        self.host_address, self.ns_address = f"{c.subnet}.1", f"{c.subnet}.2"

    @property
    def exec_prefix(self) -> list[str]:
        """Prefix a command with this to run it inside the namespace."""
        return ["ip", "netns", "exec", self.namespace]

    def _run(self, *cmd: str, ns: bool = False, stdin: str | None = None) -> None:
        full = [*self.exec_prefix, *cmd] if ns else list(cmd)
        out = subprocess.run(full, input=stdin, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(full)} failed: {out.stderr.strip()}")

    def _tbf(self, dev: str, ns: bool) -> None:
        c = self.config
        self._run(
            "tc", "qdisc", "add", "dev", dev, "root", "tbf",
            "rate", f"{int(c.rate_bps)}bit",
            "burst", str(c.burst_bytes),
            "limit", str(c.limit_bytes),
            ns=ns,
        )  # fmt: skip

    def _nft(self, iface: str | None, ns: bool) -> None:
        if self.config.loss_pct <= 0:
            return
        match = f'iifname "{iface}" ' if iface else ""
        rules = (
            f"table inet {self.config.name} {{\n"
            "  chain input {\n"
            "    type filter hook input priority 0; policy accept;\n"
            f"    {match}numgen random mod 100 < {self.config.loss_pct} counter drop\n"
            "  }\n"
            "}\n"
        )
        self._run("nft", "-f", "-", ns=ns, stdin=rules)

    def up(self) -> NetnsLink:
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"namespace link unavailable: {reason}")
        self.down()  # leftovers of an interrupted run
        c = self.config
        try:
            self._run("ip", "netns", "add", self.namespace)
            self._run(
                "ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if
            )  # fmt: skip
            self._run("ip", "link", "set", self.ns_if, "netns", self.namespace)
            self._run("ip", "addr", "add", f"{self.host_address}/30", "dev", self.host_if)
            self._run("ip", "link", "set", self.host_if, "up")
            self._run("ip", "addr", "add", f"{self.ns_address}/30", "dev", self.ns_if, ns=True)
            self._run("ip", "link", "set", self.ns_if, "up", ns=True)
            self._run("ip", "link", "set", "lo", "up", ns=True)
            self._tbf(self.host_if, ns=False)
            self._tbf(self.ns_if, ns=True)
            self._nft(self.host_if, ns=False)
            self._nft(None, ns=True)
        except Exception:
            self.down()
            raise
        logger.info(
            "netns link up: %s <-> %s, %g bit/s, %d%% loss",
            self.host_address,
            self.ns_address,
            c.rate_bps,
            c.loss_pct,
        )
        return self

    def dropped_packets(self) -> int:
        """Datagrams the nftables loss rules have dropped so far (both sides)."""
        total = 0
        for prefix in ([], self.exec_prefix):
            out = subprocess.run(
                [*prefix, "nft", "list", "table", "inet", self.config.name],
                capture_output=True,
                text=True,
            )
            total += sum(int(m) for m in re.findall(r"counter packets (\d+)", out.stdout))
        return total

    def down(self) -> None:
        """Remove everything :meth:`up` made (ignores what is already gone)."""
        for cmd in (
            ["nft", "delete", "table", "inet", self.config.name],
            ["ip", "link", "del", self.host_if],
            ["ip", "netns", "del", self.namespace],
        ):
            if shutil.which(cmd[0]) is not None:
                subprocess.run(cmd, capture_output=True)

    def __enter__(self) -> NetnsLink:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()
