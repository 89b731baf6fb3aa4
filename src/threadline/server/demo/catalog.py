"""The phrase book of the demo: four made-up LLM apps, what their users ask and what they answer.

Texts are :class:`string.Template` strings (``$order_id`` …) filled from a per-session slot table
(see :mod:`threadline.server.demo.conversations`). Nothing here is random; the planner draws from it.

The first three apps trace one agent span per user message (:data:`AGENT_SHAPE`). The fourth,
``ops-assistant`` (:mod:`threadline.server.demo.ops_catalog`), calls the OpenAI client directly,
traced by the OpenInference instrumentor with no parent span (:data:`OPENAI_SHAPE`): one trace
per LLM call, the whole history resent every time, tool loops run by the app's own code, and
Markdown replies (lists, tables, code blocks).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Tool:
    """A function the agent may call: JSON-ish argument and result templates."""

    name: str
    description: str
    arguments: dict[str, str]
    result: str


@dataclass(frozen=True)
class Intent:
    """One thing a user wants: how they ask, what the app looks up, how it answers, follow-ups."""

    key: str
    openings: tuple[str, ...]
    replies: tuple[str, ...]
    goal: str
    tool: Tool | None = None
    retrieval: tuple[str, ...] = ()
    followups: tuple[tuple[str, str], ...] = ()
    #: Tool rounds of a tool loop, each the tool calls of one model reply (several run in parallel);
    #: empty: one round of ``tool`` when there is one.
    rounds: tuple[tuple[Tool, ...], ...] = ()

    def tool_rounds(self) -> tuple[tuple[Tool, ...], ...]:
        """The tool calls the app makes for this intent, round by round."""
        if self.rounds:
            return self.rounds
        return ((self.tool,),) if self.tool is not None else ()


#: Traced as one agent (or chain) span per user message, LLM and tool spans beneath it.
AGENT_SHAPE = "agent"
#: Traced by the OpenAI instrumentor alone: one root LLM span (one trace) per model call.
OPENAI_SHAPE = "openai"


@dataclass(frozen=True)
class App:
    """One demo application: its agent span, system prompt, models and intents."""

    name: str
    root_kind: str
    system_prompt: str
    models: tuple[str, ...]
    intents: tuple[Intent, ...] = field(default_factory=tuple)
    shape: str = AGENT_SHAPE

    def tools(self) -> tuple[Tool, ...]:
        """Every tool of the app once (by name), as sent in the ``tools`` of each request."""
        seen: dict[str, Tool] = {}
        for intent in self.intents:
            for round_ in intent.tool_rounds():
                for tool in round_:
                    seen.setdefault(tool.name, tool)
        return tuple(seen.values())


TRACK_ORDER = Tool(
    "track_order", "Look up the shipping status of an order.", {"order_id": "$order_id"},
    '{"order_id": "$order_id", "status": "in_transit", "carrier": "$carrier", "tracking_number": "$tracking", '
    '"last_scan": "$city distribution center", "estimated_delivery": "$date"}',
)
START_RETURN = Tool(
    "start_return", "Open a return (RMA) for an order line.", {"order_id": "$order_id", "reason": "$return_reason"},
    '{"rma": "$rma", "label_url": "https://returns.example.com/label/$rma.pdf", "refund_method": "original_payment", '
    '"refund_amount": "$price"}',
)
SEARCH_PRODUCTS = Tool(
    "search_products", "Full-text search of the catalog with stock per colour.", {"query": "$product $color"},
    '{"results": [{"sku": "$sku", "name": "$product", "color": "$color", "price": "$price", "in_stock": true, '
    '"sizes": ["S", "M", "L"]}], "total": 1}',
)
GET_REFUND = Tool(
    "get_refund_status", "Status of the refund of an order.", {"order_id": "$order_id"},
    '{"order_id": "$order_id", "refund_state": "approved", "amount": "$price", "issued_on": "$date", '
    '"expected_on_statement_within_days": 5}',
)
SEARCH_FLIGHTS = Tool(
    "search_flights", "Search flights between two airports on a date.",
    {"origin": "$origin", "destination": "$destination", "date": "$date", "passengers": "$party"},
    '{"offers": [{"flight": "$flight_a", "departs": "07:40", "arrives": "10:55", "price": "$fare_a", "stops": 0}, '
    '{"flight": "$flight_b", "departs": "13:15", "arrives": "18:20", "price": "$fare_b", "stops": 1}]}',
)
GET_BOOKING = Tool(
    "get_booking", "Fetch a booking and its change conditions.", {"booking_ref": "$booking_ref"},
    '{"booking_ref": "$booking_ref", "route": "$origin-$destination", "fare_class": "Economy Light", '
    '"change_fee": "$change_fee", "changeable": true}',
)
SEARCH_HOTELS = Tool(
    "search_hotels", "Search hotels in a city.",
    {"city": "$destination", "check_in": "$date", "nights": "$nights", "max_price": "$budget"},
    '{"hotels": [{"name": "$hotel", "stars": 4, "price_per_night": "$hotel_price", "distance_km": 0.8, '
    '"rating": 8.7}], "total": 14}',
)

SHOP = App(
    name="shop-assistant",
    root_kind="AGENT",
    system_prompt=(
        "You are Nova, the customer support assistant of Northwind Outfitters. Be concise and friendly. "
        "Use the tools to look up orders, returns and products; never invent order data. Escalate to a "
        "human agent when the customer asks for one."
    ),
    models=("gpt-4o-mini", "gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"),
    intents=(
        Intent(
            "where_is_my_order",
            ("Hi, where is my order $order_id? It was supposed to arrive on $weekday.",
             "my package $order_id still hasn't shown up, can you check what's going on?",
             "Can you tell me the status of order $order_id please"),
            ("Thanks for waiting! Your order $order_id is on its way with $carrier. It was last scanned at the "
             "$city distribution center and should arrive by $date. You can follow it with tracking number "
             "$tracking on the $carrier website.",
             "I checked order $order_id: it left our warehouse and is now with $carrier (tracking $tracking). The "
             "latest scan is from $city and the estimated delivery date is $date. Sorry it's taking longer "
             "than expected!"),
            "tell me where my package is",
            tool=TRACK_ORDER,
            followups=(
                ("Can I change the delivery address?",
                 "Since the parcel is already with $carrier I can't change the address from here, but you can "
                 "redirect it for free in the $carrier app using tracking number $tracking."),
                ("Will I need to sign for it?",
                 "No signature is needed for orders under $$200, so the driver can leave it at your door or "
                 "with a neighbour."),
                ("What if it doesn't arrive by $date?",
                 "If it hasn't arrived two business days after $date, reply here and I'll open a carrier "
                 "investigation and ship a replacement right away."),
            ),
        ),
        Intent(
            "return_item",
            ("I'd like to return the $product I bought last week, it doesn't fit.",
             "hey, how do I send back the $product from order $order_id? wrong size",
             "The $product I received is damaged. I want to return it."),
            ("I've opened return $rma for the $product from order $order_id. Print the prepaid label "
             "(https://returns.example.com/label/$rma.pdf), drop the parcel at any $carrier point within 30 "
             "days, and your refund of $price goes back to your original payment method once it's scanned.",
             "All set: return $rma is open. Pack the $product in its original packaging if you still have it, "
             "attach the label from your email and hand it to $carrier. You'll get $price back within 5 business "
             "days of us receiving it."),
            "process my return",
            tool=START_RETURN,
            retrieval=("Returns: items can be returned within 30 days of delivery in their original condition. "
                       "Return shipping is free for exchanges and for damaged items.",
                       "Refunds are issued to the original payment method 3-5 business days after the return is "
                       "received at our warehouse."),
            followups=(
                ("Can I exchange it for a size $size instead?",
                 "Yes! Exchanges are free. Reply with the size you want and I'll reserve a $product in size $size "
                 "so it ships as soon as your return is scanned."),
                ("How long does the refund take?",
                 "Refunds are issued 3-5 business days after the parcel reaches our warehouse; your bank may "
                 "take a few more days to show it."),
            ),
        ),
        Intent(
            "product_question",
            ("Does the $product come in $color?",
             "is the $product available in $color in size $size?",
             "Looking for the $product in $color, do you have it in stock?"),
            ("Good news: the $product is available in $color (SKU $sku) for $price, and sizes S, M and L are in "
             "stock. Orders placed before 2 pm ship the same day.",
             "Yes, we have the $product in $color for $price. Size $size is in stock right now, and delivery "
             "usually takes 2-4 business days."),
            "check if the $product is in stock",
            tool=SEARCH_PRODUCTS,
            followups=(
                ("Is it waterproof?",
                 "The $product has a DWR-coated shell rated to 10,000 mm, so it's fully waterproof in rain and "
                 "snow; the seams are taped as well."),
                ("What's the difference with last year's model?",
                 "This year's $product is about 120 g lighter, uses recycled fabric and adds a two-way zip. The "
                 "fit is the same, so you can take your usual size."),
            ),
        ),
        Intent(
            "refund_status",
            ("I returned order $order_id two weeks ago and still don't have my refund.",
             "where is my refund for $order_id??"),
            ("Your refund for order $order_id was approved on $date for $price. It usually shows on your "
             "statement within 5 business days of that date; if it isn't there by then, your bank can trace it "
             "with reference $rma.",),
            "tell me when I get my money back",
            tool=GET_REFUND,
            followups=(("Can you send me a confirmation by email?",
                        "Done, I've sent the refund confirmation for $order_id to the email on your account."),),
        ),
        Intent(
            "policy_question",
            ("What's your return policy for sale items?",
             "Do you ship to $country and how much does it cost?"),
            ("Sale items can be returned within 14 days for store credit, unless they arrive damaged, in which "
             "case you get a full refund. We ship to $country; standard delivery costs $$9.90 and is free over "
             "$$150.",),
            "answer my question about the policy",
            retrieval=("Sale and clearance items: returns accepted within 14 days for store credit only.",
                       "International shipping: 40+ countries, flat rate 9.90, free above 150."),
        ),
    ),
)

TRAVEL = App(
    name="travel-concierge",
    root_kind="AGENT",
    system_prompt=(
        "You are a travel concierge for Skylark Travel. Help customers find and change flights and hotels. "
        "Always confirm dates and passenger counts before booking. Prices are in EUR."
    ),
    models=("claude-3-5-sonnet-20241022", "claude-3-5-haiku-20241022", "gpt-4o"),
    intents=(
        Intent(
            "flight_search",
            ("I need a flight from $origin to $destination on $date for $party people",
             "Find me the cheapest flight $origin -> $destination on $date please",
             "any direct flights from $origin to $destination on $date?"),
            ("I found two options from $origin to $destination on $date:\n1. $flight_a, departs 07:40, arrives "
             "10:55, direct, $fare_a per person\n2. $flight_b, departs 13:15, arrives 18:20, one stop, $fare_b "
             "per person\nWould you like me to hold one of them?",),
            "find me a flight to $destination",
            tool=SEARCH_FLIGHTS,
            followups=(
                ("Does the first one include checked luggage?",
                 "$flight_a is an Economy Light fare: one cabin bag of 8 kg is included, and a 23 kg checked bag "
                 "costs EUR 35 per direction if you add it now (more at the airport)."),
                ("Ok book the first one",
                 "Great, I've held $flight_a for $party passenger(s) for 30 minutes. Please confirm the names as "
                 "in the passports and I'll send the payment link."),
                ("Is there anything later in the evening?",
                 "The last departure that day is at 20:05 with one stop, arriving after midnight. The 13:15 "
                 "option is the latest with a reasonable arrival time."),
            ),
        ),
        Intent(
            "change_booking",
            ("Can I move my booking $booking_ref to $date?",
             "I need to change my flight $booking_ref, something came up. New date $date."),
            ("Your booking $booking_ref ($origin-$destination) can be changed. Moving it to $date costs a change "
             "fee of $change_fee plus any fare difference, which is currently EUR 0 on the same flight. "
             "Shall I go ahead?",),
            "move my flight",
            tool=GET_BOOKING,
            followups=(("Yes please go ahead",
                        "Done! Booking $booking_ref is now on $date. Your new e-ticket is on its way to your "
                        "inbox, and the $change_fee fee was charged to the card on file."),),
        ),
        Intent(
            "hotel_search",
            ("Find me a hotel in $destination for $nights nights from $date, under $budget a night",
             "I need a hotel near the city center in $destination, $nights nights, max $budget/night"),
            ("$hotel is a good fit: 4 stars, 0.8 km from the center, rated 8.7/10, at $hotel_price per night for "
             "$nights nights from $date. There are 13 other options if you'd like to compare.",),
            "find me a hotel",
            tool=SEARCH_HOTELS,
            followups=(("Does it have free cancellation?",
                        "Yes, $hotel offers free cancellation until 48 hours before check-in on $date."),),
        ),
        Intent(
            "baggage_policy",
            ("How much liquid can I bring in my carry-on?",
             "can I take my $pet on the plane with me?"),
            ("In the cabin, liquids must be in containers of up to 100 ml inside one transparent 1-litre bag. "
             "Small pets up to 8 kg including the carrier can travel in the cabin on most of our partner "
             "airlines for EUR 60 per flight.",),
            "answer my baggage question",
            retrieval=("Cabin liquids: max 100 ml per container, all in a single resealable 1 L bag.",
                       "Pets in cabin: dogs and cats up to 8 kg including carrier, fee EUR 60 per segment."),
        ),
    ),
)

DOCS = App(
    name="docs-copilot",
    root_kind="CHAIN",
    system_prompt=(
        "You answer developer questions about the Nimbus API using only the retrieved documentation. "
        "Include short code samples. If the docs don't cover it, say so."
    ),
    models=("gpt-4o", "gpt-4.1-mini", "mistral-large-latest", "gemini-2.0-flash"),
    intents=(
        Intent(
            "rate_limits",
            ("What are the rate limits on the $endpoint endpoint?",
             "I'm getting 429s from $endpoint, what's the limit exactly?"),
            ("The $endpoint endpoint allows 600 requests per minute per API key, with bursts up to 100 requests "
             "per second. When you exceed it you get 429 with a Retry-After header; the $language SDK retries "
             "automatically with exponential backoff (max 3 attempts).",),
            "explain the rate limit",
            retrieval=("Rate limits: 600 requests/minute per key on write endpoints; 429 responses include "
                       "Retry-After.", "SDKs retry 429 and 503 responses up to 3 times with backoff."),
            followups=(("Can I get the limit raised?",
                        "Yes, on the Business plan you can request up to 6,000 requests per minute from the "
                        "dashboard under Settings > Limits; approval usually takes one business day."),),
        ),
        Intent(
            "auth_401",
            ("I keep getting 401 Unauthorized when calling $endpoint with my API key, what am I doing wrong?",
             "why does $endpoint return 401? the key works in the dashboard"),
            ("A 401 from $endpoint almost always means the key isn't sent as a Bearer token. Send it as "
             "`Authorization: Bearer <key>` (not as a query parameter), and check the key belongs to the same "
             "environment: test keys start with `nk_test_` and only work against sandbox.nimbus.dev.",),
            "explain why I get 401",
            retrieval=("Authentication: pass the API key in the Authorization header as a Bearer token.",
                       "Test keys (nk_test_) only work against the sandbox base URL."),
            followups=(("Ah it was the sandbox thing. Thanks!",
                        "Glad it's working! Remember to switch to your live key before deploying."),),
        ),
        Intent(
            "webhooks",
            ("How do I verify webhook signatures in $language?",
             "what's the right way to check the Nimbus-Signature header in $language"),
            ("Compute an HMAC-SHA256 of the raw request body with your webhook secret and compare it to the "
             "`Nimbus-Signature` header in constant time. In $language:\n\n```\nexpected = hmac_sha256(secret, "
             "raw_body)\nif not constant_time_equals(expected, header):\n    reject(400)\n```\nAlso reject "
             "events whose timestamp is older than 5 minutes to prevent replays.",),
            "explain webhook verification",
            retrieval=("Webhooks are signed with HMAC-SHA256 over the raw body; the signature is in "
                       "Nimbus-Signature.", "Reject deliveries with a timestamp older than 300 seconds."),
            followups=(("Do you retry failed deliveries?",
                        "Yes, failed deliveries are retried with exponential backoff for up to 3 days; you can "
                        "also replay any event from the dashboard."),),
        ),
        Intent(
            "pagination",
            ("How does pagination work for the list endpoints?",
             "how do I get all results from $endpoint, it only returns 20"),
            ("List endpoints use cursor pagination: pass `limit` (max 100) and then the `next_cursor` from each "
             "response as `cursor` until it is null. In the $language SDK, `client.list_all(...)` does this "
             "for you and yields items lazily.",),
            "explain pagination",
            retrieval=("Pagination: cursor-based; responses include next_cursor, null on the last page.",),
        ),
        Intent(
            "sdk_upload_error",
            ("The $language SDK throws `$sdk_error` when I upload files larger than 10MB",
             "uploads over 10 MB fail with $sdk_error, any idea?"),
            ("Files over 10 MB must use multipart upload: call `uploads.create(..., multipart=True)` and the "
             "$language SDK will split the file in 8 MB parts. `$sdk_error` is what you get when a single "
             "request body exceeds the 10 MB limit.",),
            "fix my upload problem",
            retrieval=("Uploads: single-request uploads are limited to 10 MB; use multipart uploads above that.",),
        ),
    ),
)

#: Apps traced with an agent span per turn.
APPS: tuple[App, ...] = (SHOP, TRAVEL, DOCS)

#: Small talk that can follow any answer: (user, assistant).
CHITCHAT: tuple[tuple[str, str], ...] = (
    ("Thanks, that helps!", "You're welcome! Is there anything else I can help you with?"),
    ("ok great", "Glad I could help. Let me know if anything else comes up."),
    ("perfect, thank you so much", "My pleasure, have a great day!"),
    ("One more question actually.", "Of course, go ahead!"),
)
CLOSINGS: tuple[tuple[str, str], ...] = (
    ("That's all, thanks.", "Happy to help. Have a great day!"),
    ("bye", "Goodbye, and thanks for reaching out!"),
)

#: What a growingly annoyed user says, one level per turn; ``$goal`` is what they still want.
FRUSTRATION: tuple[tuple[str, ...], ...] = (
    ("Hmm, that's not really what I asked. Can you $goal?", "No, I meant: please $goal."),
    ("I already told you all of that. I just need you to $goal.",
     "You're asking me the same thing again. Please just $goal."),
    ("This is getting really frustrating. Why can't you simply $goal?",
     "Seriously, this is the third time I'm asking. $Goal!"),
    ("This is useless. I want to talk to a real person.", "Are you even reading my messages?? I need you to $goal!!"),
    ("FORGET IT. Absolutely terrible service, I'm done with this.",
     "Unbelievable. I've wasted 20 minutes here. Cancel my account."),
)
#: What the assistant says when it fails to help (the cause of the frustration).
UNHELPFUL: tuple[str, ...] = (
    "I'm sorry for the confusion! Could you please share more details about your request so I can help?",
    "I understand. To help you further, could you confirm the details of your request once more?",
    "I apologize for the inconvenience. Unfortunately I wasn't able to find that information. Is there "
    "anything else I can help you with?",
    "Thanks for your patience! Here is some general information: you can find answers to most questions "
    "in our Help Center.",
    "I'm sorry you feel that way. I'm here to help: could you describe the issue again?",
)
#: What a user writes after a turn that failed with no answer.
AFTER_FAILURE: tuple[str, ...] = (
    "hello? did you get my message?",
    "It just shows an error. Trying again: ",
    "Something went wrong on your side, I'll ask again. ",
)
