"""A tiny OpenAI-compatible server on the loopback interface for the client and server-manager tests.

Takes the vLLM server's arguments (``--model --host --port --api-key``) plus test switches:

* ``--fail-first N --fail-status S``: the first N chat requests get HTTP S (then normal answers);
* ``--drop-first N``: the first N chat requests lose their connection without an answer;
* ``--exit-at-start``: exit with code 3 before listening (a server that cannot start);
* ``--reply TEXT``: every completion's text (default: ``model|temperature|top_k|prompt text``);
* ``--answers FILE``: a JSON list, entry ``k`` answering the ``k``-th chat request as vLLM does with
  ``return_token_ids`` (``{"prompt_token_ids": [...], "choices": [{"token_ids", "logprobs",
  "finish_reason"}, ...]}``: the first ``n`` choices, their log-probs when asked for, each token named
  ``token_id:<id>``).

``POST .../load_lora_adapter`` is logged and answered 200 (no body). ``GET /health`` is 200; chat requests need ``Authorization: Bearer <api key>`` (else 401). Each chat
request is logged to stdout as one JSON line (its sampling fields), so tests can read what was sent.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", default="")
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--fail-status", type=int, default=503)
    parser.add_argument("--drop-first", type=int, default=0)
    parser.add_argument("--exit-at-start", action="store_true")
    parser.add_argument("--reply", default=None)
    parser.add_argument("--answers", default=None)
    args, _ = parser.parse_known_args()
    if args.exit_at_start:
        print("fake server: cannot start (asked to)", flush=True)
        sys.exit(3)
    lock = threading.Lock()
    answers = json.loads(open(args.answers).read()) if args.answers else None
    counts = {"chat": 0}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):  # quiet
            pass

        def _send(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        @staticmethod
        def _answer(entry: dict, request: dict) -> dict:
            choices = []
            for index, choice in enumerate(entry["choices"][: request["n"]]):
                out = {"index": index, "message": {"role": "assistant", "content": ""}, "finish_reason": choice["finish_reason"]}
                out["token_ids"] = choice["token_ids"]
                if request.get("logprobs"):
                    content = [{"token": f"token_id:{i}", "logprob": lp} for i, lp in zip(choice["token_ids"], choice["logprobs"])]
                    out["logprobs"] = {"content": content}
                choices.append(out)
            return {"choices": choices, "prompt_token_ids": entry["prompt_token_ids"]}

        def do_GET(self):
            if self.path == "/health":
                self._send(200, {})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            request = json.loads(self.rfile.read(length) or b"{}")
            if args.api_key and self.headers.get("Authorization") != f"Bearer {args.api_key}":
                self._send(401, {"error": "bad api key"})
                return
            if self.path.endswith("/load_lora_adapter"):  # logged as {"load_lora_adapter": body}; answered with an empty body
                with lock:
                    print(json.dumps({"load_lora_adapter": request}), flush=True)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            with lock:
                counts["chat"] += 1
                number = counts["chat"]
            if number <= args.drop_first:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if number <= args.drop_first + args.fail_first:
                self._send(args.fail_status, {"error": f"injected {args.fail_status}"})
                return
            fields = (
                "model",
                "max_tokens",
                "temperature",
                "top_p",
                "top_k",
                "repetition_penalty",
                "min_p",
                "n",
                "logprobs",
                "top_logprobs",
            )
            fields += ("return_token_ids", "return_tokens_as_token_ids", "logit_bias")
            sampling = {k: request.get(k) for k in fields}
            with lock:
                print(json.dumps(sampling), flush=True)
            if answers is not None:
                self._send(200, self._answer(answers[number - args.drop_first - args.fail_first - 1], request))
                return
            text = request["messages"][-1]["content"][-1]["text"]
            reply = args.reply if args.reply is not None else f"{request['model']}|{request['temperature']}|{request['top_k']}|{text}"
            self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}]})

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
