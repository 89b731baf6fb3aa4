// Send a small conversation from Node to Threadline with OpenInference's context helpers.
// Usage: THREADLINE_ENDPOINT=http://127.0.0.1:6006/v1/traces THREADLINE_PROJECT=js node send.mjs
// Prints one JSON line per finished turn: {"session_id", "user_id", "trace_id", "input", "output"}.
import { context } from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { NodeTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-node";
import { OITracer, setMetadata, setSession, setTags, setUser } from "@arizeai/openinference-core";

const endpoint = process.env.THREADLINE_ENDPOINT ?? "http://localhost:6006/v1/traces";
const project = process.env.THREADLINE_PROJECT ?? "default";

const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({ "openinference.project.name": project, "service.name": "js-test" }),
  spanProcessors: [
    new SimpleSpanProcessor(new OTLPTraceExporter({ url: endpoint, headers: { "x-project-name": project } })),
  ],
});
provider.register(); // AsyncLocalStorage context manager, so context.with() propagates
const tracer = new OITracer({ tracer: provider.getTracer("threadline-js-test") });

const conversations = [
  { sessionId: "js-session-1", userId: "js-user-a", tags: ["js", "beta"], questions: ["hello from node", "second node turn"] },
  { sessionId: "js-session-2", userId: "js-user-b", tags: ["js"], questions: ["another conversation"] },
];

async function turn(question) {
  return tracer.startActiveSpan(
    "agent",
    { attributes: { "openinference.span.kind": "CHAIN", "input.value": question } },
    async (root) => {
      const answer = `node says: ${question}`;
      await tracer.startActiveSpan(
        "llm",
        {
          attributes: {
            "openinference.span.kind": "LLM",
            "llm.model_name": "js-model",
            "llm.token_count.prompt": question.split(" ").length,
            "llm.token_count.completion": answer.split(" ").length,
            "llm.token_count.total": question.split(" ").length + answer.split(" ").length,
          },
        },
        async (llm) => llm.end(),
      );
      root.setAttribute("output.value", answer);
      root.end();
      return { trace_id: root.spanContext().traceId, input: question, output: answer };
    },
  );
}

for (const c of conversations) {
  let ctx = setSession(context.active(), { sessionId: c.sessionId });
  ctx = setUser(ctx, { userId: c.userId });
  ctx = setTags(ctx, c.tags);
  ctx = setMetadata(ctx, { runtime: "node", conversation: c.sessionId });
  for (const q of c.questions) {
    const done = await context.with(ctx, () => turn(q));
    console.log(JSON.stringify({ session_id: c.sessionId, user_id: c.userId, tags: c.tags, ...done }));
  }
}
await provider.forceFlush();
await provider.shutdown();
