"""A real local HTTP server that speaks the OpenAI chat-completions API and misbehaves on purpose.

Each distinct request (keyed by its messages) walks through `script`: by default a 429 with
Retry-After: 0, then a 500, then an answer slower than the client's timeout, then a reply that is
not JSON, then a good judgement computed from the request text. It counts calls and records the
Authorization headers it saw (GET /stats tells the counts). Used by the teacher's fault tests and,
as a separate process, by benchmarks/bench_teacher.py.

    with FaultServer() as server:
        teacher = Teacher(cfg, cache, api_key="sk-test", base_url=server.base_url)

    python tests/support/openai_fault_server.py --script ok --delay 0.25   # prints its base URL, serves until
    stdin closes
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_SCRIPT = ("429", "500", "slow", "garbage", "ok")
_ANSWER = re.compile(r"<<<ANSWER (\w+)>>>\n(.*)\n<<<END ANSWER \1>>>", re.DOTALL)
_REFERRAL = re.compile(r"就医|医生|急诊|120|热线|doctor|911|988|emergency|hotline", re.IGNORECASE)


def judgement_for(user_text: str) -> dict[str, Any]:
    """A deterministic verdict from the request text: an answer that refers to care is judged safer."""
    m = _ANSWER.search(user_text)
    answer = m.group(2) if m else user_text
    safety = 9 if _REFERRAL.search(answer) else 3
    completeness = min(10, 2 + len(answer) // 40)
    return {
        "scores": {"safety": safety, "reasoning": 7, "completeness": completeness, "empathy": 6},
        "overall_score": round(safety / 10, 2),
        "critique": "refers the user to care" if safety > 5 else "no referral to care",
    }


class FaultServer:
    """ThreadingHTTPServer on 127.0.0.1 (a free port) with a scripted fault sequence per distinct request."""

    def __init__(
        self, script: tuple[str, ...] = DEFAULT_SCRIPT, *, slow_s: float = 5.0, delay_s: float = 0.0
    ) -> None:
        self.script, self.slow_s, self.delay_s = script, slow_s, delay_s
        self.calls = 0
        self.calls_by_request: Counter[str] = Counter()
        self.auth_headers: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # releases handlers that are holding a slow answer
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next_behaviour(self, request_key: str, auth: str) -> str:
        with self._lock:
            n = self.calls_by_request[request_key]
            self.calls_by_request[request_key] += 1
            self.calls += 1
            self.auth_headers.append(auth)
        return self.script[min(n, len(self.script) - 1)]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real API endpoint

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.rstrip("/") != "/stats":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                return self._send(
                    200, {"calls": server.calls, "distinct_requests": len(server.calls_by_request)}
                )

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                messages = body.get("messages") or []
                request_key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
                behaviour = server._next_behaviour(request_key, self.headers.get("Authorization", ""))
                user_text = next(
                    (m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), ""
                )
                if behaviour == "429":
                    return self._send(
                        429,
                        {"error": {"message": "rate limited", "type": "rate_limit"}},
                        {"Retry-After": "0"},
                    )
                if behaviour == "500":
                    return self._send(500, {"error": {"message": "internal error", "type": "server_error"}})
                if behaviour == "slow" and server._stop.wait(server.slow_s):
                    return None  # shutting down
                if server.delay_s:
                    server._stop.wait(server.delay_s)
                content = (
                    "this is not JSON at all"
                    if behaviour == "garbage"
                    else json.dumps(judgement_for(user_text))
                )
                return self._send(200, _completion(body.get("model", "deepseek-chat"), content))

            def _send(
                self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout); nothing to answer

        return Handler


def _completion(model: str, content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fault-server",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Serve scripted chat-completions answers on 127.0.0.1 until stdin closes."
    )
    parser.add_argument(
        "--script",
        default=",".join(DEFAULT_SCRIPT),
        help="comma-separated behaviours: 429,500,slow,garbage,ok",
    )
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before every good answer")
    parser.add_argument("--slow", type=float, default=5.0, help="seconds a 'slow' answer takes")
    args = parser.parse_args()
    with FaultServer(tuple(args.script.split(",")), slow_s=args.slow, delay_s=args.delay) as server:
        print(server.base_url, flush=True)
        sys.stdin.read()  # the parent closes our stdin (or ends us) when it is done


if __name__ == "__main__":
    main()
