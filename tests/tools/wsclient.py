#!/usr/bin/env python3
"""A WebSocket client for the end-to-end tests, built on the `websockets` package (PyPI): a
client that is not ours. Runs one scenario against URL and prints one JSON line.

Usage: wsclient.py URL SCENARIO
  echo       a text and a binary message, each echoed back
  fragments  a 100 KiB message sent as 1 KiB frames, echoed back whole
  ping       a ping, answered by a pong
  too-big    a 10 MiB message: the server closes with 1009
  close      the client closes with 4001 "bye"
  closed-by  asks the server to close (it sends 4002 "as asked")
  spin       sends "loop", on which the server's handler spins: the server closes (1011)
  vanish     sends "ready", waits for its echo, then drops the TCP connection (RST)
  many N     N sockets open at once, each echoing one message
"""

import asyncio
import json
import os
import socket
import struct
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def main():
    url, scenario = sys.argv[1], sys.argv[2]
    out = {}
    if scenario == "many":
        count = int(sys.argv[3])
        # Handshakes 50 at a time (a burst of 1,000 upgrades is more than a pool's queue
        # takes); every socket stays open until all are, then each echoes one message.
        handshakes = asyncio.Semaphore(50)
        all_open = asyncio.Event()
        opened = 0

        async def one(i):
            nonlocal opened
            async with handshakes:
                ws = await connect(url, open_timeout=60)
            async with ws:
                opened += 1
                if opened == count:
                    all_open.set()
                await all_open.wait()
                await ws.send(f"hello {i}")
                return await ws.recv() == f"hello {i}"

        results = await asyncio.gather(*[one(i) for i in range(count)], return_exceptions=True)
        if not all_open.is_set():
            all_open.set()
        out["echoed"] = sum(1 for r in results if r is True)
        out["errors"] = [repr(r) for r in results if r is not True][:5]
        print(json.dumps(out))
        return
    async with connect(url, max_size=None, ping_interval=None) as ws:
        if scenario == "echo":
            await ws.send("hello")
            out["text"] = await ws.recv()
            data = os.urandom(1000)
            await ws.send(data)
            got = await ws.recv()
            out["binary_equal"] = got == data
            out["binary_type"] = type(got).__name__
        elif scenario == "fragments":
            data = os.urandom(100 * 1024)
            await ws.send([data[i:i + 1024] for i in range(0, len(data), 1024)])
            got = await ws.recv()
            out["equal"] = got == data
            out["length"] = len(got)
        elif scenario == "ping":
            waiter = await ws.ping(b"are you there")
            out["latency"] = await asyncio.wait_for(waiter, 10)
        elif scenario == "too-big":
            try:
                await ws.send(b"x" * (10 * 1024 * 1024))
                await asyncio.wait_for(ws.recv(), 30)
            except ConnectionClosed as e:
                out["code"] = e.rcvd.code if e.rcvd else None
                out["reason"] = e.rcvd.reason if e.rcvd else None
        elif scenario == "close":
            await ws.close(4001, "bye")
            out["code"] = ws.close_code
        elif scenario == "closed-by":
            await ws.send("close-me")
            try:
                await asyncio.wait_for(ws.recv(), 30)
            except ConnectionClosed as e:
                out["code"] = e.rcvd.code if e.rcvd else None
                out["reason"] = e.rcvd.reason if e.rcvd else None
        elif scenario == "spin":
            await ws.send("loop")
            try:
                await asyncio.wait_for(ws.recv(), 30)
            except ConnectionClosed as e:
                out["code"] = e.rcvd.code if e.rcvd else None
                out["reason"] = e.rcvd.reason if e.rcvd else None
        elif scenario == "vanish":
            await ws.send("ready")
            out["echo"] = await ws.recv()
            sock = ws.transport.get_extra_info("socket")
            # SO_LINGER 0: closing sends a RST, no close frame, no FIN handshake.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            ws.transport.abort()
        else:
            raise SystemExit(f"unknown scenario {scenario}")
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
