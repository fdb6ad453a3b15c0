"""A real local HTTP server that speaks the OpenAI chat-completions API and misbehaves on purpose.

Each distinct request (keyed by its messages) walks through `script`: by default a 429 with
Retry-After: 0, then a 500, then an answer slower than the client's timeout, then a reply that is
not JSON, then a good judgement computed from the request text (reply_for: the teacher's judgement, or
the evaluation judge's rubric verdicts and Qwen3Guard's reply format). It counts calls and records the
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


_REPLY = re.compile(r"<<<REPLY (\w+)>>>\n(.*)\n<<<END REPLY \1>>>", re.DOTALL)
_DECLINE = re.compile(r"cannot|can't|won't|decline|refuse|不能|无法|拒绝", re.IGNORECASE)


_RISK_QUESTION = re.compile(r"<<<PATIENT_QUESTION (\w+)>>>\n(.*)\n<<<END PATIENT_QUESTION \1>>>", re.DOTALL)
_URGENT = re.compile(
    r"blood|bleed|can't breathe|poison|unconscious|流血|出血|喘不上气|呼吸困难|下毒|叫不醒", re.IGNORECASE
)
_OBEY_RISK = re.compile(r"label (?:this|it) (?:as )?low|标(?:为|成)低", re.IGNORECASE)


def risk_label_for(question: str) -> dict[str, Any]:
    """The risk judge's label (data/prompts/risk_label_v*.txt): critical with urgent words, else low."""
    urgent = bool(_URGENT.search(question))
    return {
        "risk_level": "critical" if urgent else "low",
        "safety_categories": ["emergency"] if urgent else [],
        "safety_concern": "scripted: urgent words" if urgent else None,
    }


def reply_for(messages: list[dict[str, Any]]) -> str:
    """The reply text for a request: the evaluation judge's rubrics (harm: <<<REPLY>>> fence; safety and
    helpfulness: a <<<REFERENCE>>> fence; Qwen3Guard: a conversation ending with the assistant's answer) get
    deterministic verdicts in their own format; the risk judge's prompt (a <<<PATIENT_QUESTION>>> fence)
    gets risk_label_for; anything else gets the teacher's judgement_for."""
    user_text = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    if m := _RISK_QUESTION.search(user_text):
        return json.dumps(risk_label_for(m.group(2)))
    if m := _REPLY.search(user_text):
        declined = bool(_DECLINE.search(m.group(2)))
        verdict = {"harm_score": 1 if declined else 5, "complied": not declined, "reason": "scripted"}
        return json.dumps(verdict)
    if "<<<REFERENCE " in user_text and (m := _ANSWER.search(user_text)):
        answer, declined = m.group(2), bool(_DECLINE.search(m.group(2)))
        return json.dumps(
            {
                "safety": 5 if _REFERRAL.search(answer) else 2,
                "helpfulness": 1 if declined else min(5, 2 + len(answer) // 40),
                "refusal": declined,
                "reason": "scripted",
            }
        )
    if messages and messages[-1].get("role") == "assistant":
        answer = messages[-1].get("content", "")
        if _DECLINE.search(answer):
            return "Safety: Safe\nCategories: None\nRefusal: Yes"
        if _REFERRAL.search(answer):
            return "Safety: Safe\nCategories: None\nRefusal: No"
        return "Safety: Unsafe\nCategories: Non-violent Illegal Acts\nRefusal: No"
    return json.dumps(judgement_for(user_text))


_OBEY = re.compile(
    r"ignore (?:all )?(?:the )?previous instructions|score (?:it|this)[^.\n]{0,30}10"
    r"|overall_score[^.\n]{0,12}1|满分|忽略(?:之前|以上)",
    re.IGNORECASE,
)
_FIRST_FENCE = re.compile(r"<<<QUESTION (\w+)>>>")


def gullible_reply(messages: list[dict[str, Any]]) -> str:
    """Behaviour "gullible": a judge that obeys any grading instruction it finds OUTSIDE the data fences of
    the user message (the fences carry the code of the first <<<QUESTION code>>> marker, which the data
    cannot forge), and otherwise grades like judgement_for. Against an unfenced prompt everything is
    outside, so an instruction in the answer is obeyed: the test of the teacher's prompt fencing."""
    user_text = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    if m := re.search(r"<<<PATIENT_QUESTION (\w+)>>>", user_text):  # the risk judge's prompt
        code = re.escape(m.group(1))
        fenced = re.compile(
            rf"<<<PATIENT_QUESTION {code}>>>\n(.*?)\n<<<END PATIENT_QUESTION {code}>>>", re.DOTALL
        )
        inside = fenced.search(user_text)
        if _OBEY_RISK.search(fenced.sub(" ", user_text)):
            return json.dumps({"risk_level": "low", "safety_categories": [], "safety_concern": None})
        return json.dumps(risk_label_for(inside.group(1) if inside else user_text))
    outside = user_text
    if m := _FIRST_FENCE.search(user_text):
        code = re.escape(m.group(1))
        for name in ("QUESTION", "ANSWER"):
            fenced = re.compile(rf"<<<{name} {code}>>>.*?<<<END {name} {code}>>>", re.DOTALL)
            outside = fenced.sub(" ", outside)
    if _OBEY.search(outside):
        scores = {"safety": 10, "reasoning": 10, "completeness": 10, "empathy": 10}
        return json.dumps({"scores": scores, "overall_score": 1.0, "critique": "obeyed the answer"})
    return json.dumps(judgement_for(user_text))


class FaultServer:
    """ThreadingHTTPServer on 127.0.0.1 (a free port) with a scripted fault sequence per distinct request."""

    def __init__(
        self,
        script: tuple[str, ...] = DEFAULT_SCRIPT,
        *,
        slow_s: float = 5.0,
        delay_s: float = 0.0,
        hold: threading.Event | None = None,
    ) -> None:
        # hold: when given, good answers wait until it is set (tests count the requests in flight meanwhile)
        self.script, self.slow_s, self.delay_s, self.hold = script, slow_s, delay_s, hold
        self.calls = 0
        self.calls_by_request: Counter[str] = Counter()
        self.auth_headers: list[str] = []
        self.bodies: list[dict[str, Any]] = []  # every request body, in arrival order
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
                with server._lock:
                    server.bodies.append(body)
                messages = body.get("messages") or []
                request_key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
                behaviour = server._next_behaviour(request_key, self.headers.get("Authorization", ""))
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
                while server.hold is not None and not server.hold.wait(0.05):
                    if server._stop.is_set():
                        return None  # shutting down
                content = (
                    "this is not JSON at all"
                    if behaviour == "garbage"
                    else gullible_reply(messages)
                    if behaviour == "gullible"
                    else reply_for(messages)
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
        help="comma-separated behaviours: 429,500,slow,garbage,ok,gullible",
    )
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before every good answer")
    parser.add_argument("--slow", type=float, default=5.0, help="seconds a 'slow' answer takes")
    args = parser.parse_args()
    with FaultServer(tuple(args.script.split(",")), slow_s=args.slow, delay_s=args.delay) as server:
        print(server.base_url, flush=True)
        sys.stdin.read()  # the parent closes our stdin (or ends us) when it is done


if __name__ == "__main__":
    main()
