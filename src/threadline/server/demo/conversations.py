"""Plan the demo's conversations: who talks to which app, when, about what, and what goes wrong.

:func:`plan_demo` is pure and deterministic for a seed: the same ``(sessions, seed, days)`` always
yields the same users, texts, tokens and errors (only the absolute times move with ``now``), so
tests can derive their expectations from the plan itself.

Every third conversation (``number % 3 == 2``) is with an app traced by the OpenAI instrumentor
alone (:data:`~threadline.server.demo.catalog.OPENAI_SHAPE`): its history holds the real chat
messages (assistant tool calls with call ids, ``tool`` results answering them), resent whole on
every call, so a turn's steps are LLM call → tool(s) → LLM call, sometimes over two rounds.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from string import Template
from typing import Any

from threadline.server.demo import catalog
from threadline.server.demo.catalog import AGENT_SHAPE, OPENAI_SHAPE, App, Intent
from threadline.server.demo.ops_catalog import INSTRUMENTED_APPS

#: One conversation in this many is traced by the OpenAI instrumentor alone (no parent span).
INSTRUMENTED_EVERY = 3
FRUSTRATED_SHARE = 0.15
FAILED_TURN_SHARE = 0.05
PROVIDERS = {"gpt": "openai", "o": "openai", "claude": "anthropic", "mistral": "mistralai", "gemini": "google"}
#: Milliseconds per generated token, by model family (decode speed drives LLM latency).
MS_PER_TOKEN = {"gpt-4o-mini": 9.0, "gpt-4.1-mini": 10.0, "gpt-4o": 16.0, "claude-3-5-haiku": 11.0,
                "claude-3-5-sonnet": 19.0, "mistral-large": 17.0, "gemini-2.0-flash": 7.0}
LLM_ERRORS: dict[str, tuple[tuple[str, str], ...]] = {
    "openai": (
        ("openai.RateLimitError", "Error code: 429 - Rate limit reached for $model on tokens per min (TPM): "
         "Limit 30000, Used 29412, Requested 1871. Please try again in 2.566s."),
        ("openai.APITimeoutError", "Request timed out."),
        ("openai.InternalServerError", "Error code: 500 - The server had an error while processing your request."),
    ),
    "anthropic": (
        ("anthropic.InternalServerError", "Error code: 529 - {'type': 'error', 'error': {'type': "
         "'overloaded_error', 'message': 'Overloaded'}}"),
        ("anthropic.RateLimitError", "Error code: 429 - This request would exceed the rate limit for your "
         "organization of 40,000 input tokens per minute."),
    ),
    "mistralai": (("mistralai.models.SDKError", "API error occurred: Status 429. Body: Requests rate limit "
                   "exceeded"),),
    "google": (("google.api_core.exceptions.ResourceExhausted", "429 Resource has been exhausted (e.g. check "
                "quota)."),),
}
TOOL_ERRORS = (
    ("httpx.ReadTimeout", "timed out after 10.0s calling $tool"),
    ("KeyError", "'results'"),
    ("requests.exceptions.ConnectionError", "HTTPSConnectionPool(host='internal-api', port=443): Max retries "
     "exceeded with url: /v2/$tool"),
)

FIRST_NAMES = ("maria", "james", "aiko", "lucas", "fatima", "noah", "chen", "olivia", "mateo", "priya", "liam",
               "sofia", "kwame", "emma", "ivan", "zoe", "omar", "hana", "diego", "lea", "arjun", "nina", "tom",
               "yara", "felix", "ines", "sam", "mei", "jonas", "ava")
LAST_NAMES = ("garcia", "smith", "tanaka", "martin", "khan", "mueller", "wang", "rossi", "silva", "patel",
              "novak", "dubois", "okafor", "larsen", "kowalski", "nguyen", "haddad", "berg")


@dataclass(frozen=True)
class ToolRequest:
    """A tool call a model asked for: its call id (None in agent-shaped traces), name and JSON arguments."""

    call_id: str | None
    name: str
    arguments: str


@dataclass(frozen=True)
class Message:
    """One chat message of an LLM call: an assistant message may carry tool calls instead of
    content, and a ``tool`` message names the call it answers."""

    role: str
    content: str | None
    tool_calls: tuple[ToolRequest, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class LlmCall:
    """One call to a model: its messages, reply (or tool calls), tokens and latency."""

    model: str
    provider: str
    messages: tuple[Message, ...]
    reply: str | None
    tool_calls: tuple[ToolRequest, ...]
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int
    error: tuple[str, str] | None = None


@dataclass(frozen=True)
class ToolRun:
    """One tool execution: name, JSON arguments, JSON result (or the error it raised)."""

    name: str
    description: str
    arguments: str
    result: str | None
    latency_ms: int
    error: tuple[str, str] | None = None
    call_id: str | None = None


@dataclass(frozen=True)
class Retrieval:
    """One retriever step: query, documents, latency."""

    query: str
    documents: tuple[str, ...]
    latency_ms: int


@dataclass(frozen=True)
class TurnPlan:
    """One turn: the user's message, the steps taken to answer it, and the reply (None if it failed).

    An agent-shaped turn is one trace (a root span with the steps beneath it); an OpenAI-shaped
    turn is one trace per LLM call, its tool runs known only from the messages.
    """

    index: int
    start: datetime
    user_message: str
    reply: str | None
    retrieval: Retrieval | None
    steps: tuple[LlmCall | ToolRun, ...]
    error: tuple[str, str] | None
    shape: str = AGENT_SHAPE

    @property
    def llm_calls(self) -> tuple[LlmCall, ...]:
        """The turn's model calls in order."""
        return tuple(s for s in self.steps if isinstance(s, LlmCall))

    @property
    def prompt_tokens(self) -> int:
        return sum(s.prompt_tokens for s in self.steps if isinstance(s, LlmCall))

    @property
    def completion_tokens(self) -> int:
        return sum(s.completion_tokens for s in self.steps if isinstance(s, LlmCall))

    @property
    def latency_ms(self) -> int:
        """Wall time of the whole turn (steps plus a few ms of orchestration each)."""
        steps = sum(s.latency_ms + 4 for s in self.steps)
        return steps + (self.retrieval.latency_ms + 4 if self.retrieval else 0) + 12

    @property
    def span_count(self) -> int:
        """Spans sent for the turn."""
        if self.shape == OPENAI_SHAPE:
            return len(self.llm_calls)
        return 1 + len(self.steps) + (1 if self.retrieval else 0)

    @property
    def trace_count(self) -> int:
        """Traces sent for the turn: one, or one per LLM call without a parent span."""
        return len(self.llm_calls) if self.shape == OPENAI_SHAPE else 1


@dataclass(frozen=True)
class SessionPlan:
    """One conversation of one user with one app."""

    session_id: str
    user_id: str
    app: App
    metadata: dict[str, Any]
    tags: tuple[str, ...]
    frustrated: bool
    turns: tuple[TurnPlan, ...]


def tokens_of(text: str) -> int:
    """A rough token count (4 characters per token), at least 1."""
    return max(1, len(text) // 4)


def prompt_tokens_of(messages: tuple[Message, ...], overhead: int) -> int:
    """Rough prompt tokens of ``messages`` (content, tool calls, a few per message) plus ``overhead``."""
    calls = sum(tokens_of(r.name + r.arguments) + 8 for m in messages for r in m.tool_calls)
    return sum(tokens_of(m.content or "") + 4 for m in messages) + calls + overhead


def provider_of(model: str) -> str:
    """The provider serving ``model`` (openai, anthropic, …)."""
    for prefix, provider in PROVIDERS.items():
        if model.startswith(prefix):
            return provider
    return "openai"


def plan_users(count: int, rng: random.Random) -> list[str]:
    """``count`` distinct e-mail style user ids."""
    users: list[str] = []
    while len(users) < count:
        name = f"{rng.choice(FIRST_NAMES)}.{rng.choice(LAST_NAMES)}"
        if name in users:
            name = f"{name}{rng.randint(2, 99)}"
        if name not in users:
            users.append(name)
    return [f"{u}@example.com" for u in users]


def plan_demo(sessions: int, seed: int, days: float, now: datetime) -> list[SessionPlan]:
    """The whole demo: ``sessions`` conversations over the ``days`` before ``now`` (aware UTC)."""
    rng = random.Random(seed)
    user_count = max(3, min(60, sessions // 6))
    users = plan_users(user_count, rng)
    weights = [1.0 / (i + 1) ** 0.6 for i in range(user_count)]  # a few heavy users, a long tail
    plans = [_plan_session(rng, i, rng.choices(users, weights)[0], days, now) for i in range(sessions)]
    return sorted(plans, key=lambda p: p.turns[0].start)


def _slots(rng: random.Random, now: datetime) -> dict[str, str]:
    day = now + timedelta(days=rng.randint(2, 40))
    fare = rng.randint(59, 420)
    budget = rng.choice((120, 150, 180, 250))
    return {
        "order_id": f"NW-{rng.randint(100000, 999999)}",
        "tracking": f"1Z{rng.getrandbits(40):010X}",
        "carrier": rng.choice(("UPS", "DHL", "FedEx", "USPS")),
        "city": rng.choice(("Reno", "Memphis", "Louisville", "Columbus", "Allentown")),
        "date": day.strftime("%B %d").replace(" 0", " "),
        "weekday": rng.choice(("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")),
        "product": rng.choice(("Alpine Shell Jacket", "Trailrunner 3 shoes", "Merino Base Layer", "Summit 45L pack",
                               "Down Vest", "Canyon hiking pants")),
        "color": rng.choice(("navy", "forest green", "black", "rust", "glacier blue")),
        "size": rng.choice(("S", "M", "L", "XL")),
        "sku": f"NWO-{rng.randint(1000, 9999)}",
        "price": f"${rng.randint(39, 289)}.{rng.choice(('00', '50', '95', '99'))}",
        "rma": f"RMA-{rng.randint(10000, 99999)}",
        "return_reason": rng.choice(("wrong size", "damaged on arrival", "not as described")),
        "country": rng.choice(("Canada", "Germany", "Japan", "Australia", "Mexico")),
        "origin": rng.choice(("LIS", "BER", "AMS", "MAD", "CDG", "FCO")),
        "destination": rng.choice(("Barcelona", "Copenhagen", "Athens", "Dublin", "Vienna", "Porto")),
        "party": str(rng.choice((1, 1, 2, 2, 3, 4))),
        "flight_a": f"{rng.choice(('TP', 'LH', 'KL', 'IB', 'AF'))}{rng.randint(100, 1999)}",
        "flight_b": f"{rng.choice(('FR', 'U2', 'VY', 'W6'))}{rng.randint(1000, 8999)}",
        "fare_a": f"EUR {fare}", "fare_b": f"EUR {max(39, fare - rng.randint(20, 90))}",
        "booking_ref": "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6)),
        "change_fee": f"EUR {rng.choice((45, 60, 75, 90))}",
        "nights": str(rng.randint(2, 7)), "budget": f"EUR {budget}",
        "hotel": rng.choice(("Hotel Lumen", "Casa do Rio", "The Harbour House", "Stadt Palais", "Olive Grove Inn")),
        "hotel_price": f"EUR {rng.randint(budget - 60, budget - 5)}",
        "pet": rng.choice(("cat", "small dog")),
        "endpoint": rng.choice(("/v2/invoices", "/v2/customers", "/v2/uploads", "/v2/events", "/v2/payments")),
        "language": rng.choice(("Python", "TypeScript", "Go", "Java", "Ruby")),
        "sdk_error": rng.choice(("PayloadTooLargeError", "RequestEntityTooLarge: 413", "ECONNRESET")),
        **_ops_slots(rng),
    }


def _ops_slots(rng: random.Random) -> dict[str, str]:
    """Slots of the back-office app: warehouses, stock levels, refunds, parcel rates."""
    warehouse, warehouse2 = rng.sample(("RNO-1", "MEM-2", "CMH-1", "ABE-3", "SDF-1"), 2)
    stock = {f"stock{n}_{size}": str(rng.choice((0, 2, 5, 8, 13, 21, 34, 40, 57)))
             for n in ("", "2") for size in ("s", "m", "l")}
    weight = rng.choice((0.8, 1.5, 2.5, 4.0, 7.5))
    standard = 9 + weight * rng.uniform(2.2, 3.4)
    return {
        "warehouse": warehouse, "warehouse2": warehouse2, **stock, "incoming": str(rng.choice((12, 24, 36, 48))),
        "refund_id": f"re_{rng.getrandbits(48):012x}", "weight": f"{weight:g}",
        "rate_std": f"${standard:.2f}", "rate_exp": f"${standard * rng.uniform(1.8, 2.6):.2f}",
    }


def _fill(template: str, slots: dict[str, str]) -> str:
    return Template(template).safe_substitute(slots)


def _plan_session(rng: random.Random, number: int, user_id: str, days: float, now: datetime) -> SessionPlan:
    apps = INSTRUMENTED_APPS if number % INSTRUMENTED_EVERY == INSTRUMENTED_EVERY - 1 else catalog.APPS
    app = rng.choice(apps)
    slots = _slots(rng, now)
    frustrated = rng.random() < FRUSTRATED_SHARE
    turn_count = rng.randint(5, 12) if frustrated else min(15, max(1, int(rng.lognormvariate(1.1, 0.7))))
    model = rng.choice(app.models)
    channel = rng.choice(("web", "web", "ios", "android", "slack"))
    experiment = rng.choice(("prompt-v7", "prompt-v8"))
    metadata = {"app": app.name, "app_version": rng.choice(("2.14.0", "2.14.1", "2.15.0")), "channel": channel,
                "experiment": experiment, "locale": rng.choice(("en-US", "en-GB", "en-US", "en-CA"))}
    tags = ("production", channel, experiment)
    session_id = f"sess_{rng.getrandbits(64):016x}"
    dialogue = _dialogue(rng, app, slots, turn_count, frustrated)
    # When: a day in the window, mostly during waking hours (UTC), never in the future.
    window_start = now - timedelta(days=days)
    start = now - timedelta(days=rng.random() * days)
    daytime = start.replace(hour=rng.choice((8, 9, 10, 11, 13, 14, 15, 16, 17, 19, 20, 22)),
                            minute=rng.randint(0, 59))
    if window_start <= daytime <= now:
        start = daytime
    history: list[Message] = [Message("system", app.system_prompt)]
    turns: list[TurnPlan] = []
    at = start
    line = 0
    said: set[tuple[str, str | None, str]] = set()
    while len(turns) < turn_count:
        user_text, reply, intent = dialogue[line]
        if turns and turns[-1].reply is None:  # the last turn failed: the user asks again
            prefix = rng.choice(catalog.AFTER_FAILURE)
            user_text = prefix + turns[-1].user_message if prefix.endswith(" ") else prefix
        if app.shape == OPENAI_SHAPE:
            # A turn of message lists is named by its user message and the message before it: a
            # user who repeats themselves word for word after the same reply adds an exclamation mark.
            while (history[-1].role, history[-1].content, user_text) in said:
                user_text += "!"
            said.add((history[-1].role, history[-1].content, user_text))
        turn = _plan_turn(rng, len(turns), at, app, intent, slots, model, history, user_text, reply)
        turns.append(turn)
        if app.shape == OPENAI_SHAPE:  # the app keeps every message it sent, tool calls and results too
            history[:] = turn.llm_calls[-1].messages
        else:
            history.append(Message("user", user_text))
        if turn.reply is not None:
            history.append(Message("assistant", turn.reply))
            line += 1
        think = rng.uniform(4, 40) if frustrated else rng.lognormvariate(3.4, 0.8)
        at = at + timedelta(milliseconds=turn.latency_ms) + timedelta(seconds=min(600.0, think))
    overrun = turns[-1].start + timedelta(milliseconds=turns[-1].latency_ms) - (now - timedelta(minutes=1))
    if overrun > timedelta(0):
        turns = [replace(t, start=t.start - overrun) for t in turns]
    return SessionPlan(session_id, user_id, app, metadata, tags, frustrated, tuple(turns))


def _dialogue(rng: random.Random, app: App, slots: dict[str, str], count: int,
              frustrated: bool) -> list[tuple[str, str, Intent | None]]:
    """(user message, intended reply, intent that needs tools/retrieval or None) for each turn."""
    intents = list(app.intents)
    rng.shuffle(intents)
    intent = intents.pop()
    lines: list[tuple[str, str, Intent | None]] = [
        (_fill(rng.choice(intent.openings), slots),
         _fill(rng.choice(catalog.UNHELPFUL if frustrated else intent.replies), slots), intent)]
    goal = _fill(intent.goal, slots)
    followups = list(intent.followups)
    rng.shuffle(followups)
    chitchat = list(catalog.CHITCHAT)
    rng.shuffle(chitchat)
    while len(lines) < count:
        if frustrated:
            progress = (len(lines) - 1) / (count - 2) if count > 2 else 1.0
            level = round(progress * (len(catalog.FRUSTRATION) - 1))
            said = [Template(o).safe_substitute(goal=goal, Goal=goal[:1].upper() + goal[1:])
                    for o in catalog.FRUSTRATION[level]]
            text = rng.choice([o for o in said if o != lines[-1][0]] or said)
            reply = rng.choice([r for r in catalog.UNHELPFUL if r != lines[-1][1]])
            lines.append((text, reply, intent if rng.random() < 0.4 else None))
        elif followups and rng.random() < 0.7:
            question, answer = followups.pop()
            lines.append((_fill(question, slots), _fill(answer, slots), None))
        elif len(lines) == count - 1 or not (intents or chitchat):
            lines.append((*rng.choice(catalog.CLOSINGS), None))
        elif chitchat and (rng.random() < 0.4 or not intents):
            lines.append((*chitchat.pop(), None))
        else:
            intent = intents.pop()
            followups = list(intent.followups)
            rng.shuffle(followups)
            lines.append((_fill(rng.choice(intent.openings), slots), _fill(rng.choice(intent.replies), slots), intent))
    return lines


def _llm_latency(rng: random.Random, model: str, completion: int) -> int:
    per_token = next((v for k, v in MS_PER_TOKEN.items() if model.startswith(k)), 14.0)
    ms = rng.uniform(250, 900) + completion * per_token * rng.uniform(0.8, 1.3)
    if rng.random() < 0.04:
        ms *= rng.uniform(2.5, 5)  # the occasional slow provider response
    return int(ms)


def _plan_turn(rng: random.Random, index: int, start: datetime, app: App, intent: Intent | None,
               slots: dict[str, str], model: str, history: list[Message], user_text: str,
               reply: str) -> TurnPlan:
    failed = rng.random() < FAILED_TURN_SHARE
    messages = (*history, Message("user", user_text))
    retrieval = None
    if intent is not None and intent.retrieval:
        docs = tuple(_fill(d, slots) for d in intent.retrieval)
        retrieval = Retrieval(user_text, docs, int(rng.lognormvariate(4.6, 0.4)))
        messages = (*messages[:-1], Message("system", "Context:\n" + "\n".join(docs)), messages[-1])
    rounds = intent.tool_rounds() if intent is not None else ()
    overhead = 120 if rounds or app.shape == OPENAI_SHAPE else 0  # tool definitions in the prompt
    provider = provider_of(model)
    steps: list[LlmCall | ToolRun] = []
    structured = app.shape == OPENAI_SHAPE
    fail_tool = failed and bool(rounds) and not structured and rng.random() < 0.5
    # Without a parent span a tool that raises leaves no trace; the call after the tool loop may fail.
    fail_last = failed and bool(rounds) and structured and rng.random() < 0.5

    def turn(reply: str | None, error: tuple[str, str] | None) -> TurnPlan:
        return TurnPlan(index, start, user_text, reply, retrieval, tuple(steps), error, app.shape)

    def llm_error() -> tuple[str, str]:
        kind, text = rng.choice(LLM_ERRORS[provider])
        return kind, _fill(text, {"model": model})

    if failed and not fail_tool and not fail_last:
        error = llm_error()
        steps.append(LlmCall(model, provider, messages, None, (), 0, 0, int(rng.uniform(300, 30000)), error))
        return turn(None, error)
    for round_ in rounds:
        requests = tuple(ToolRequest(_call_id(rng) if structured else None, tool.name,
                                     json.dumps({k: _fill(v, slots) for k, v in tool.arguments.items()}))
                         for tool in round_)
        completion = sum(18 + tokens_of(r.arguments) for r in requests)
        steps.append(LlmCall(model, provider, messages, None, requests, prompt_tokens_of(messages, overhead),
                             completion, _llm_latency(rng, model, 30 * len(requests))))
        if fail_tool:
            kind, text = rng.choice(TOOL_ERRORS)
            error = (kind, _fill(text, {"tool": round_[0].name}))
            steps.append(ToolRun(round_[0].name, round_[0].description, requests[0].arguments, None,
                                 int(rng.uniform(50, 10000)), error))
            return turn(None, error)
        runs = [ToolRun(tool.name, tool.description, request.arguments, _fill(tool.result, slots),
                        int(rng.lognormvariate(5.3, 0.6)), call_id=request.call_id)
                for tool, request in zip(round_, requests, strict=True)]
        steps.extend(runs)
        if structured:
            messages = (*messages, Message("assistant", None, tool_calls=requests),
                        *(Message("tool", run.result, tool_call_id=run.call_id) for run in runs))
        else:
            for run in runs:
                messages = (*messages, Message("assistant", f"[tool call] {run.name}({run.arguments})"),
                            Message("tool", run.result))
    prompt = prompt_tokens_of(messages, overhead)
    if fail_last:
        error = llm_error()
        steps.append(LlmCall(model, provider, messages, None, (), 0, 0, int(rng.uniform(300, 30000)), error))
        return turn(None, error)
    completion = tokens_of(reply)
    steps.append(LlmCall(model, provider, messages, reply, (), prompt, completion,
                         _llm_latency(rng, model, completion)))
    return turn(reply, None)


def _call_id(rng: random.Random) -> str:
    """An OpenAI tool call id (``call_`` and 24 letters and digits)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "call_" + "".join(rng.choice(alphabet) for _ in range(24))
