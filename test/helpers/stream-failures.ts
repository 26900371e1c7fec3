// How a model server says, inside a stream whose 200 head is out, that it failed: Ollama's
// last NDJSON line (protocols.md), an OpenAI-compatible SSE event before `[DONE]`, the
// Responses API's `event: error`; each with a whole answer of the same kind, and the first
// event both send. For the tests of what the gateway makes of such answers (cache, errors).

export const STREAM_FAILURES = {
  ollama: { path: '/api/chat', type: 'application/x-ndjson', ok: '{"model":"m","message":{"role":"assistant","content":"fine"},"done":true,"eval_count":1}\n', error: '{"error":"an error was encountered while running the model: CUDA error"}\n' },
  openai: { path: '/v1/chat/completions', type: 'text/event-stream', ok: 'data: {"choices":[{"index":0,"delta":{"content":"fine"}}]}\n\ndata: [DONE]\n\n', error: 'data: {"error":{"message":"out of memory","type":"server_error"}}\n\ndata: [DONE]\n\n' },
  responses: { path: '/v1/responses', type: 'text/event-stream', ok: 'event: response.completed\ndata: {"type":"response.completed","response":{"output_text":"fine"}}\n\n', error: 'event: error\ndata: {"type":"error","code":"server_error","message":"out of memory"}\n\n' },
} as const;

/** The first event of a stream of content type `type`, before its end. */
export function firstEvent(type: string): string {
  return type === 'text/event-stream' ? 'data: {"choices":[{"index":0,"delta":{"content":"par"}}]}\n\n' : '{"model":"m","message":{"role":"assistant","content":"par"},"done":false}\n';
}
