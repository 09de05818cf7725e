"""``streamcodec serve``: the websockets signalling server for ``streamcodec call``."""

from __future__ import annotations

import argparse
import asyncio

from streamcodec.cli.call import quiet_libraries
from streamcodec.transport.signalling import SignallingServer, SignallingServerConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the signalling server that pairs `streamcodec call` peers in rooms of two",
        description="Websockets signalling server: rooms of two, offer/answer relay, "
        "optional shared-secret token. Audio never passes through it.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 = any)")
    p.add_argument("--token", default=None, help="shared secret every peer must present")
    p.set_defaults(func=run)


async def _serve(config: SignallingServerConfig) -> None:
    server = SignallingServer(config)
    host, port = await server.start()
    auth = "token required" if config.token else "no token"
    print(f"signalling server on ws://{host}:{port} ({auth}); Ctrl-C to stop", flush=True)
    try:
        await server.serve_forever()
    finally:
        await server.close()


def run(args: argparse.Namespace) -> int:
    quiet_libraries(args)
    config = SignallingServerConfig(host=args.host, port=args.port, token=args.token)
    try:
        asyncio.run(_serve(config))
    except KeyboardInterrupt:
        print("stopped")
    except OSError as exc:
        print(f"streamcodec serve: cannot listen on {args.host}:{args.port}: {exc}")
        return 1
    return 0
