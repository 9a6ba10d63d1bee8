"""Model judges for the blind A/B: an OpenAI-compatible chat endpoint, or a local model, asked which of two answers
is better. Both return the judge's raw replies; `verdict.parse_verdict` reads them.

The endpoint is spoken to with the standard library (urllib), so no HTTP client is needed. Its key comes only from
the environment: TUNESMITH_JUDGE_KEY, else OPENAI_API_KEY; it is sent as `Authorization: Bearer KEY` and never
printed. `tunesmith serve` works as a judge (give it a key and export the same key as TUNESMITH_JUDGE_KEY).

The key is often the user's real OpenAI key, so it only travels where nobody can read it on the way: over https, or
to this machine (a loopback address). A plain http:// URL to another machine is refused unless the user says the
network is trusted (`--judge-insecure`). A redirect to another origin (scheme, host or port) is never followed:
urllib would carry the Authorization header along.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from tunesmith.errors import JudgeError, ModelError

KEY_VARIABLES = ("TUNESMITH_JUDGE_KEY", "OPENAI_API_KEY")
JUDGE_MAX_TOKENS = 256  # room for a short reason before the verdict
TIMEOUT_S = 300  # a CPU server decoding several requests at once can take minutes per reply
PARALLEL_REQUESTS = 4  # servers batch concurrent requests (tunesmith serve does), so a few at once are faster
RETRIES = 3  # for 429 (rate limit) and 5xx, waiting 1, 2, 4 s

JUDGE_SYSTEM = ("You are an impartial judge comparing two AI assistants' answers to the same user question. Judge "
                "which answer is more helpful, correct and relevant. The order of the answers, their length and "
                "the assistants' names must not influence you.")
JUDGE_INSTRUCTION = "Which answer is better? Reply with only [[A]], [[B]], or [[tie]] if they are equally good."


def judge_messages(question: str, answer_a: str, answer_b: str) -> list[dict[str, str]]:
    user = (f"[Question]\n{question}\n\n[Answer A]\n{answer_a}\n[End of answer A]\n\n"
            f"[Answer B]\n{answer_b}\n[End of answer B]\n\n{JUDGE_INSTRUCTION}")
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def endpoint_base(url: str) -> str:
    """'http://host:8000', '.../v1/' or '.../v1/chat/completions' -> 'http://host:8000/v1'."""
    url = url.rstrip("/")
    for suffix in ("/chat/completions", "/completions", "/models"):
        url = url.removesuffix(suffix)
    return url if urlsplit(url).path.strip("/") else f"{url}/v1"


def is_loopback_host(host: str | None) -> bool:
    """localhost or a loopback address (127.0.0.0/8, ::1); a name is not looked up, so it cannot be spoofed."""
    name = (host or "").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def check_transport(base: str, insecure: bool) -> None:
    """The key (and every prompt) may travel only over https or to this machine, unless the user trusts the
    network (--judge-insecure)."""
    parts = urlsplit(base)
    if parts.scheme == "https" or is_loopback_host(parts.hostname) or insecure:
        return
    raise JudgeError(f"judge {base}: plain http to another machine would send the API key and the prompts "
                     "unencrypted; use an https:// URL, or add --judge-insecure if you trust this network")


class _CrossOriginRedirect(Exception):
    def __init__(self, url: str):
        super().__init__(url)
        self.url = url


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only within the judge's own origin: urllib would send the Authorization header anywhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        target = urljoin(req.full_url, newurl)
        if origin(target) != origin(req.full_url):
            fp.close()
            raise _CrossOriginRedirect(target)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class HttpJudge:
    kind = "endpoint"

    def __init__(self, url: str, model: str | None = None, max_tokens: int = JUDGE_MAX_TOKENS,
                 timeout: float = TIMEOUT_S, insecure: bool = False):
        self.base = endpoint_base(url)
        check_transport(self.base, insecure)
        self.model, self.max_tokens = model, max_tokens
        self.timeout = timeout
        self.key_variable = next((v for v in KEY_VARIABLES if os.environ.get(v)), None)
        self.key = os.environ.get(self.key_variable) if self.key_variable else None
        handlers: list = [_SameOriginRedirects]
        if is_loopback_host(urlsplit(self.base).hostname):
            handlers.append(urllib.request.ProxyHandler({}))  # never hand a loopback request (and key) to a proxy
        self._opener = urllib.request.build_opener(*handlers)

    def describe(self) -> str:
        return f"{self.base} (model {self.model})"

    def check(self) -> None:
        """Fail now, before answers are generated, if the judge cannot be reached or refuses the key; pick the model
        when the endpoint serves only one and --judge-model was not given."""
        listing = self._call("GET", "/models", missing_ok=True)  # some servers have no /models
        served = [m.get("id") for m in (listing or {}).get("data", []) if isinstance(m, dict)]
        if self.model is None:
            if len(served) != 1:
                listed = f"it serves {', '.join(map(str, served))}" if served else "it does not list its models"
                raise JudgeError(f"judge {self.base}: {listed}; name the judge model with --judge-model NAME")
            self.model = served[0]
        elif served and self.model not in served:
            raise JudgeError(f"judge {self.base}: no model '{self.model}' there; --judge-model must be one of "
                             f"{', '.join(map(str, served))}")

    def ask_all(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        pool = ThreadPoolExecutor(PARALLEL_REQUESTS)
        try:
            return list(pool.map(self.ask, conversations))
        finally:  # after a failure, drop the queued requests instead of sending them all first
            pool.shutdown(wait=True, cancel_futures=True)

    def ask(self, messages: list[dict[str, str]]) -> str:
        body = {"model": self.model, "messages": messages, "temperature": 0, "max_tokens": self.max_tokens}
        reply = self._call("POST", "/chat/completions", body)
        try:
            content = reply["choices"][0]["message"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise JudgeError(f"judge {self.base}: the reply is not a chat completion (no choices[0].message); "
                             "point --judge at an OpenAI-compatible /v1 endpoint") from None
        return content if isinstance(content, str) else ""  # a refusal without text is an invalid verdict

    def _call(self, method: str, path: str, body: dict | None = None, missing_ok: bool = False) -> dict | None:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        data = json.dumps(body).encode("utf-8") if body is not None else None
        for attempt in range(RETRIES + 1):
            request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
            try:
                with self._opener.open(request, timeout=self.timeout) as response:
                    raw = response.read()
                break
            except _CrossOriginRedirect as e:
                raise JudgeError(f"judge {self.base}: the server redirects to another origin ({e.url}); the key is "
                                 "not sent there: point --judge at the final URL") from None
            except urllib.error.HTTPError as e:
                if e.code == 404 and missing_ok:
                    return None
                if (e.code == 429 or e.code >= 500) and attempt < RETRIES:
                    time.sleep(2 ** attempt)
                    continue
                raise JudgeError(self._status_message(e.code, _error_detail(e))) from None
            except TimeoutError:
                raise JudgeError(f"judge {self.base}: no reply within {self.timeout:.0f} s; check the server "
                                 "is not overloaded") from None
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", None) or e
                raise JudgeError(f"judge {self.base}: cannot connect ({reason}); start the judge server (e.g. "
                                 "`tunesmith serve --port 8000`) or fix the --judge URL") from None
        try:
            parsed = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise JudgeError(f"judge {self.base}{path}: the reply is not JSON; point --judge at an OpenAI-compatible "
                             "/v1 endpoint") from None
        if not isinstance(parsed, dict):
            raise JudgeError(f"judge {self.base}{path}: the reply is not a JSON object; point --judge at an "
                             "OpenAI-compatible /v1 endpoint")
        return parsed

    def _status_message(self, code: int, detail: str) -> str:
        where = f"judge {self.base}: HTTP {code}{f' ({detail})' if detail else ''}"
        if code in (401, 403):
            if self.key_variable:
                return f"{where}; the key in {self.key_variable} was refused, set it to the judge's API key"
            return f"{where}; the judge needs an API key: export TUNESMITH_JUDGE_KEY (or OPENAI_API_KEY)"
        if code == 404:
            return f"{where}; check the --judge URL (it should end in /v1) and --judge-model"
        return where


def _error_detail(error: urllib.error.HTTPError) -> str:
    """The `error.message` of an OpenAI-style error body, else the start of the body, else the reason."""
    try:
        text = error.read().decode("utf-8", "replace")
    except OSError:
        text = ""
    try:
        message = json.loads(text)["error"]["message"]
        return str(message)[:200]
    except (ValueError, KeyError, TypeError):
        return " ".join(text.split())[:200] or str(error.reason or "")


class LocalJudge:
    """A model loaded here (anything `tunesmith chat` loads), asked with the same prompt, greedy."""

    kind = "local"

    def __init__(self, spec: str, device: str = "auto", max_tokens: int = JUDGE_MAX_TOKENS):
        self.spec = None if spec in ("", "base") else spec
        self.device, self.max_tokens = device, max_tokens
        if self.spec and self.spec.startswith((".", "/", "~")) and not Path(self.spec).expanduser().exists():
            raise ModelError(f"--judge {spec}: folder not found; give a model folder, run directory, hub id, "
                             "'base', an http(s):// endpoint, or 'human'")

    def describe(self) -> str:
        return f"local model {self.spec or 'base (embedded SmolLM2)'}"

    def check(self) -> None:
        """Nothing to reach: the judge loads after the compared models are done, so one model is in memory."""

    def ask_all(self, conversations: list[list[dict[str, str]]]) -> list[str]:
        import gc

        from tunesmith.evaluate.benchmarks import generate_replies
        from tunesmith.infer.loading import load_for_inference

        loaded = load_for_inference(self.spec, self.device, name="judge")
        replies = generate_replies(loaded, conversations, self.max_tokens)
        del loaded
        gc.collect()
        return replies


def make_judge(spec: str, model: str | None = None, device: str = "auto", max_tokens: int = JUDGE_MAX_TOKENS,
               insecure: bool = False) -> HttpJudge | LocalJudge:
    if spec.startswith(("http://", "https://")):
        return HttpJudge(spec, model, max_tokens, insecure=insecure)
    if model is not None:
        raise JudgeError("--judge-model names the model of a judge endpoint; a local --judge is the model itself")
    return LocalJudge(spec, device, max_tokens)
