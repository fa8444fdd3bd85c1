#!/usr/bin/env python3
"""An HTTP/3 client for the end-to-end tests, built on aioquic: a QUIC and HTTP/3
implementation independent of the node's.

Usage:
  h3client.py --cafile CERT [--method GET] [--data-file FILE] [--count N] URL

Sends N requests (default 1) concurrently on one connection and prints one JSON line per
response: {"status", "headers", "body" (text, or null when not UTF-8), "length", "sha256",
"chunks", "reset", "retried" (the server sent a Retry)}. Exits non-zero when the connection
fails. With --stall-handshake, starts N handshakes that never finish. With --leave, a client that
goes away: `close` sends a GET, prints "sent" and closes the connection when a line arrives on
stdin; `stop` sends a GET, reads the response's first data, cancels the request (STOP_SENDING)
on a connection it keeps open, prints "stopped" and waits for a line on stdin.
"""

import argparse
import asyncio
import hashlib
import json
import ssl
import sys
from urllib.parse import urlparse

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent, StreamReset


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic)
        self.waiting = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamReset):
            state = self.waiting.get(event.stream_id)
            if state is not None and not state["done"].done():
                state["reset"] = event.error_code
                state["done"].set_result(None)
        for h3_event in self.http.handle_event(event):
            state = self.waiting.get(h3_event.stream_id)
            if state is None:
                continue
            if isinstance(h3_event, HeadersReceived):
                state["headers"].extend(h3_event.headers)
            elif isinstance(h3_event, DataReceived):
                if h3_event.data:
                    state["chunks"].append(h3_event.data)
                    first = state.get("first")
                    if first is not None and not first.done():
                        first.set_result(None)
            if getattr(h3_event, "stream_ended", False):
                state["done"].set_result(None)

    async def request(self, method, url, body):
        parsed = urlparse(url)
        stream_id = self._quic.get_next_available_stream_id()
        state = {"headers": [], "chunks": [], "done": self._loop.create_future()}
        self.waiting[stream_id] = state
        headers = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", parsed.netloc.encode()),
            (b":path", (parsed.path or "/").encode() + (b"?" + parsed.query.encode() if parsed.query else b"")),
            (b"user-agent", b"aioquic-test-client"),
        ]
        if body is not None:
            headers.append((b"content-length", str(len(body)).encode()))
        self.http.send_headers(stream_id=stream_id, headers=headers, end_stream=body is None)
        if body is not None:
            step = 64 * 1024
            for start in range(0, len(body), step):
                end = start + step >= len(body)
                self.http.send_data(stream_id=stream_id, data=body[start:start + step], end_stream=end)
                self.transmit()
                await asyncio.sleep(0)
        self.transmit()
        await state["done"]
        return state


async def stall_handshake(host, port, config, count):
    """Starts `count` handshakes and never finishes them: each Initial goes out from a socket
    of its own, the server's answer is read (so the server has taken the connection in), and
    nothing more is sent."""
    import socket
    import time
    from aioquic.quic.connection import QuicConnection
    sockets = []
    for _ in range(count):
        quic = QuicConnection(configuration=config)
        quic.connect((host, port), now=time.time())
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(10)
        for data, addr in quic.datagrams_to_send(now=time.time()):
            sock.sendto(data, addr)
        sock.recvfrom(65536)
        sockets.append(sock)
    print("stalled", flush=True)
    await asyncio.sleep(3600)


async def leave(client, url, how):
    loop = asyncio.get_running_loop()
    parsed = urlparse(url)
    stream_id = client._quic.get_next_available_stream_id()
    state = {"headers": [], "chunks": [], "done": loop.create_future(), "first": loop.create_future()}
    client.waiting[stream_id] = state
    client.http.send_headers(stream_id=stream_id, headers=[
        (b":method", b"GET"), (b":scheme", b"https"),
        (b":authority", parsed.netloc.encode()), (b":path", (parsed.path or "/").encode()),
    ], end_stream=True)
    client.transmit()
    print("sent", flush=True)
    if how == "close":
        await loop.run_in_executor(None, sys.stdin.readline)
        client.close()
        await client.wait_closed()
        print("closed", flush=True)
        return
    await state["first"]
    client._quic.stop_stream(stream_id, 0x10C)  # H3_REQUEST_CANCELLED
    client.transmit()
    print("stopped", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--cafile")
    parser.add_argument("--insecure", action="store_true", help="do not verify the certificate")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--data-file")
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--rate", type=float, default=0,
                        help="send the --count requests at this many per second instead of all at once")
    parser.add_argument("--quiet", action="store_true", help="print only a summary line")
    parser.add_argument("--hang", action="store_true",
                        help="open --count streams, send headers without ending them, and wait forever")
    parser.add_argument("--stall-handshake", action="store_true",
                        help="send a QUIC Initial, read the server's first answer, then go silent (a handshake that never finishes)")
    parser.add_argument("--leave", choices=["close", "stop"],
                        help="go away mid-request: close the connection, or cancel the request")
    args = parser.parse_args()
    parsed = urlparse(args.url)
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, max_datagram_frame_size=65536)
    if args.insecure:
        config.verify_mode = ssl.CERT_NONE
    else:
        config.load_verify_locations(args.cafile)
        config.verify_mode = ssl.CERT_REQUIRED
    config.server_name = parsed.hostname
    body = open(args.data_file, "rb").read() if args.data_file else None
    if args.stall_handshake:
        await stall_handshake(parsed.hostname, parsed.port or 443, config, args.count)
        return
    async with connect(parsed.hostname, parsed.port or 443, configuration=config, create_protocol=Client) as client:
        # Whether the server asked for address validation (a Retry) before the handshake.
        retried = client._quic._retry_count > 0
        if args.leave:
            await leave(client, args.url, args.leave)
            return
        if args.hang:
            for _ in range(args.count):
                stream_id = client._quic.get_next_available_stream_id()
                client.http.send_headers(stream_id=stream_id, headers=[
                    (b":method", b"POST"), (b":scheme", b"https"),
                    (b":authority", parsed.netloc.encode()), (b":path", b"/echo"),
                ], end_stream=False)
            client.transmit()
            print("hanging", flush=True)
            await asyncio.sleep(3600)
        if args.rate > 0:
            loop = asyncio.get_running_loop()
            start = loop.time()

            async def paced(i):
                await asyncio.sleep(max(0.0, start + i / args.rate - loop.time()))
                return await client.request(args.method, args.url, body)

            results = await asyncio.gather(*[paced(i) for i in range(args.count)])
        else:
            results = await asyncio.gather(*[client.request(args.method, args.url, body) for _ in range(args.count)])
    if args.quiet:
        ok = sum(1 for s in results if dict(s["headers"]).get(b":status") == b"200")
        print(json.dumps({"requests": len(results), "ok": ok}))
        return
    for state in results:
        headers = {k.decode(): v.decode() for k, v in state["headers"]}
        data = b"".join(state["chunks"])
        try:
            text = data.decode()
        except UnicodeDecodeError:
            text = None
        print(json.dumps({
            "status": int(headers.pop(":status", "0")),
            "headers": headers,
            "body": text,
            "length": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "chunks": len(state["chunks"]),
            "reset": state.get("reset"),
            "retried": retried,
        }))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # report and fail
        print(f"h3client: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
