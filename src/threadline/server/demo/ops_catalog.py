"""The demo app traced by the OpenAI instrumentor alone: ``ops-assistant``, Northwind's back-office chat.

It calls the OpenAI client directly, with no parent span, so every model call is a trace of its
own (:data:`~threadline.server.demo.catalog.OPENAI_SHAPE`); its intents run tool loops (two tool
calls in one reply, two rounds) and its replies use Markdown: lists, **bold**, a table and fenced
code blocks with a language.
"""

from __future__ import annotations

from threadline.server.demo.catalog import OPENAI_SHAPE, App, Intent, Tool

CHECK_STOCK = Tool(
    "check_stock", "Units on hand of one SKU at one warehouse, by size.", {"sku": "$sku", "warehouse": "$warehouse"},
    '{"sku": "$sku", "warehouse": "$warehouse", "on_hand": {"S": $stock_s, "M": $stock_m, "L": $stock_l}, '
    '"incoming_this_week": $incoming}',
)
CHECK_STOCK_2 = Tool(
    "check_stock", CHECK_STOCK.description, {"sku": "$sku", "warehouse": "$warehouse2"},
    '{"sku": "$sku", "warehouse": "$warehouse2", "on_hand": {"S": $stock2_s, "M": $stock2_m, "L": $stock2_l}, '
    '"incoming_this_week": 0}',
)
GET_ORDER = Tool(
    "get_order", "Order, shipment and payment details of one order.", {"order_id": "$order_id"},
    '{"order_id": "$order_id", "status": "lost_in_transit", "carrier": "$carrier", "tracking_number": "$tracking", '
    '"carrier_claim": "opened $date", "total": "$price", "paid_with": "visa"}',
)
ISSUE_REFUND = Tool(
    "issue_refund", "Refund an order to its original payment method.",
    {"order_id": "$order_id", "amount": "$price", "reason": "lost_in_transit"},
    '{"refund_id": "$refund_id", "state": "submitted", "amount": "$price", "eta_business_days": 5}',
)
SHIPPING_RATES = Tool(
    "get_shipping_rates", "Carrier rates for one parcel to a country.", {"country": "$country", "weight_kg": "$weight"},
    '{"country": "$country", "weight_kg": $weight, "rates": [{"service": "standard", "days": "5-8", '
    '"price": "$rate_std"}, {"service": "express", "days": "2-3", "price": "$rate_exp"}]}',
)

OPS = App(
    name="ops-assistant",
    root_kind="LLM",
    system_prompt=(
        "You are the internal operations assistant of Northwind Outfitters. Staff ask about orders, stock, "
        "refunds and shipping. Use the tools for live data and answer in Markdown: tables for comparisons, "
        "fenced code blocks for queries and scripts."
    ),
    models=("gpt-4o-mini", "gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"),
    shape=OPENAI_SHAPE,
    intents=(
        Intent(
            "stock_check",
            ("How many $sku ($product, $color) do we have left in $warehouse and $warehouse2?",
             "stock check please: $sku in $warehouse vs $warehouse2"),
            ("Stock of **$product** ($color, SKU `$sku`):\n\n"
             "| Size | $warehouse | $warehouse2 |\n|:-----|-----:|-----:|\n"
             "| S | $stock_s | $stock2_s |\n| M | $stock_m | $stock2_m |\n| L | $stock_l | $stock2_l |\n\n"
             "$warehouse also has **$incoming more** arriving this week; $warehouse2 has nothing incoming.",),
            "check the stock",
            rounds=((CHECK_STOCK, CHECK_STOCK_2),),
            followups=(("Can you set up a transfer from $warehouse2?",
                        "I can't create transfers myself, but in the WMS:\n\n1. **Inventory → Transfers → New**\n"
                        "2. From $warehouse2 to $warehouse, SKU `$sku`\n3. Enter the quantity per size\n\n"
                        "Transfers booked before noon ship the same day."),),
        ),
        Intent(
            "lost_order_refund",
            ("Customer says order $order_id never arrived. Can you check and refund it if it's lost?",
             "order $order_id: carrier says lost? please refund the customer if so"),
            ("Done. $carrier confirmed order $order_id as **lost in transit**, so I refunded it:\n\n"
             "1. Refund `$refund_id` of **$price** submitted to the original payment method (visa)\n"
             "2. Carrier claim opened on $date, nothing to do on our side\n"
             "3. The customer gets the refund email automatically\n\nAnything else for this customer?",),
            "refund the lost order",
            rounds=((GET_ORDER,), (ISSUE_REFUND,)),
            followups=(("Can you also send them a 10% voucher?",
                        "I have no voucher tool, but it takes a minute in the back office:\n\n"
                        "- open the customer from order $order_id\n- **Vouchers → New**: 10 %, valid 90 days\n"
                        "- tick *Send email* so they get it right away"),),
        ),
        Intent(
            "late_orders_query",
            ("Can you write me a SQL query for all $carrier orders that are more than 5 days late?",
             "need a query: late $carrier orders (over 5 days), worst first"),
            ("Here's the query for the orders database (PostgreSQL):\n\n```sql\n"
             "SELECT order_id, shipped_at, promised_at,\n       current_date - promised_at AS days_late\n"
             "FROM orders\nWHERE carrier = '$carrier'\n  AND delivered_at IS NULL\n"
             "  AND promised_at < current_date - 5\nORDER BY days_late DESC;\n```\n\n"
             "- **days_late** counts from the promised date, not the ship date\n"
             "- add `AND country = 'US'` to narrow it down\n- run it on the read replica, not the primary",),
            "write the query",
            followups=(("Can you turn that into a Python script that posts the list to Slack?",
                        "Sure, with `psycopg` and a Slack incoming webhook:\n\n```python\nimport os\n\n"
                        "import httpx\nimport psycopg\n\nQUERY = open(\"late_orders.sql\").read()\n\n"
                        "with psycopg.connect(os.environ[\"ORDERS_DSN\"]) as conn:\n"
                        "    rows = conn.execute(QUERY).fetchall()\n\n"
                        "lines = [f\"{order_id}: {days} days late\" for order_id, _, _, days in rows]\n"
                        "httpx.post(os.environ[\"SLACK_WEBHOOK_URL\"], json={\"text\": \"\\n\".join(lines)})\n"
                        "```\n\nRun it from cron every morning, and **never** commit the webhook URL."),),
        ),
        Intent(
            "shipping_quote",
            ("What does it cost to ship a $weight kg parcel to $country?",
             "shipping quote for $weight kg to $country?"),
            ("Rates for a **$weight kg** parcel to $country:\n\n- **Standard** (5-8 days): $rate_std\n"
             "- **Express** (2-3 days): $rate_exp\n\nOnly express is tracked to the door.",),
            "give me the shipping price",
            rounds=((SHIPPING_RATES,),),
            followups=(("Is there anything cheaper than standard?",
                        "Not to $country: standard is the cheapest service. Parcels under 2 kg can go as "
                        "~~tracked~~ **untracked letter post** for about half the price."),),
        ),
    ),
)

#: Apps traced by the OpenAI instrumentor alone (no parent span).
INSTRUMENTED_APPS: tuple[App, ...] = (OPS,)
