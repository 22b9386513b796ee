"""The proxy's HTTP/1.1 transport against a scripted server: connection reuse, a kept-alive
connection the server dropped, timeouts, and bodies with and without a length. And the
proxy on httpx's own transport (TOKI_PROXY_TRANSPORT=httpx), which must behave alike."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from openai import OpenAI

from tests.proxy.conftest import KEY
from usage.proxy.transport import LeanTransport

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"

Script = Callable[[int, int], list[bytes] | None]  # (connection, request on it) -> what to send


async def serve(script: Script) -> tuple[asyncio.Server, list[int]]:
    """A server that answers each request as `script` says: bytes to send, with None
    meaning close the connection instead of answering. Returns it and a connection count."""
    accepted = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number, served = accepted[0], 0
        accepted[0] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                await reader.readexactly(length)
                answer = script(number, served)
                served += 1
                if answer is None:
                    break
                for part in answer:
                    writer.write(part)
                    await writer.drain()
                    await asyncio.sleep(0.01)
                if b"connection: close" in answer[0]:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, accepted


def run(script: Script, calls: Callable[[httpx.AsyncClient, str], object]) -> tuple[object, int]:
    async def main() -> tuple[object, int]:
        server, accepted = await serve(script)
        port = server.sockets[0].getsockname()[1]
        client = httpx.AsyncClient(transport=LeanTransport(max_connections=10), timeout=httpx.Timeout(2.0, read=0.3))
        try:
            return await calls(client, f"http://127.0.0.1:{port}"), accepted[0]  # type: ignore[misc]
        finally:
            await client.aclose()
            server.close()

    return asyncio.run(main())


def test_sequential_requests_share_one_kept_alive_connection():
    async def calls(client, url):
        return [(await client.post(f"{url}/x", content=b"hi")).text for _ in range(5)]

    texts, connections = run(lambda conn, req: [OK], calls)

    assert texts == ["ok"] * 5
    assert connections == 1


def test_a_kept_alive_connection_the_server_closed_is_replaced_without_an_error():
    # The server answers one request per connection, then closes it without saying so.
    def script(conn, req):
        return [OK] if req == 0 else None

    async def calls(client, url):
        first = await client.post(f"{url}/x", content=b"1")
        await asyncio.sleep(0.05)
        second = await client.post(f"{url}/x", content=b"2")
        return first.text, second.text

    texts, connections = run(script, calls)

    assert texts == ("ok", "ok")
    assert connections == 2


def test_a_server_that_does_not_answer_in_time_is_a_read_timeout():
    async def calls(client, url):
        with pytest.raises(httpx.ReadTimeout):
            await client.get(f"{url}/slow")
        return "timed out"

    result, _ = run(lambda conn, req: [b"HTTP/1.1 200 OK\r\n"], calls)  # headers never end

    assert result == "timed out"


def test_nothing_listening_is_a_connect_error():
    async def main():
        client = httpx.AsyncClient(transport=LeanTransport(max_connections=1))
        with pytest.raises(httpx.ConnectError):
            await client.get("http://127.0.0.1:1/")
        await client.aclose()

    asyncio.run(main())


def test_chunked_bodies_arrive_chunk_by_chunk_and_the_connection_is_reused():
    chunked = [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: text/event-stream\r\n\r\n",
        b"7\r\ndata: 1\r\n",
        b"7\r\ndata: 2\r\n",
        b"0\r\n\r\n",
    ]

    async def calls(client, url):
        pieces = []
        for _ in range(2):
            async with client.stream("POST", f"{url}/s", content=b"{}") as response:
                pieces.append([chunk async for chunk in response.aiter_raw()])
        return pieces

    pieces, connections = run(lambda conn, req: chunked, calls)

    assert pieces == [[b"data: 1", b"data: 2"]] * 2
    assert connections == 1


def test_a_body_without_length_ends_when_the_server_closes():
    async def calls(client, url):
        return (await client.get(f"{url}/old")).text

    text, _ = run(lambda conn, req: [b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n", b"until the end"], calls)

    assert text == "until the end"


def test_bodiless_answers_complete_at_once():
    async def calls(client, url):
        head = await client.head(f"{url}/h")
        empty = await client.delete(f"{url}/d")
        return head.status_code, head.headers["content-length"], empty.status_code

    answers = {0: [b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n"], 1: [b"HTTP/1.1 204 No Content\r\n\r\n"]}
    result, _ = run(lambda conn, req: answers[conn] if req == 0 else None, calls)

    assert result == (200, "99", 204)


def test_a_response_closed_before_its_end_does_not_leave_its_connection_in_the_pool():
    async def calls(client, url):
        async with client.stream("GET", f"{url}/s") as response:
            async for _ in response.aiter_raw():
                break
        return (await client.get(f"{url}/again")).text

    first = [b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n", b"12345", b"67890"]
    text, connections = run(lambda conn, req: first if conn == 0 else [OK], calls)

    assert text == "ok"
    assert connections == 2


@pytest.fixture
def httpx_transport(settings):
    settings.TOKI_PROXY_TRANSPORT = "httpx"


def test_the_proxy_on_httpxs_own_transport_relays_the_same(httpx_transport, proxy):
    direct = OpenAI(base_url=proxy.upstream, api_key=KEY, max_retries=0)
    via = OpenAI(base_url=proxy.url, api_key=KEY, max_retries=0)
    messages = [{"role": "user", "content": "Hello"}]

    for stream in (False, True):
        expected = direct.chat.completions.create(model="sim-gpt", messages=messages, stream=stream)
        got = via.chat.completions.create(model="sim-gpt", messages=messages, stream=stream)
        if stream:
            expected, got = [c.model_dump() for c in expected], [c.model_dump() for c in got]
            assert got == expected
        else:
            assert got.model_dump() == expected.model_dump()

    assert [r.tokens_source for r in proxy.records()] == ["reported", "reported"]
