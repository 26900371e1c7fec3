// The OpenAI and Ollama endpoints whose body names the model, in one table: the front door
// routes by it (proxy/model-routing.ts) and spans are named by it (tracing/genai.ts), so a
// new endpoint goes in here once. A leaf module: the proxy must not load tracing/'s door,
// which loads the OpenTelemetry SDK.

export const enum Protocol {
  OpenAi = 0,
  Ollama = 1,
}

export interface ModelEndpoint {
  readonly protocol: Protocol;
  /** gen_ai.operation.name of a request to it; null: not a GenAI operation (/api/show). */
  readonly operation: string | null;
}

const endpoint = (protocol: Protocol, operation: string | null): ModelEndpoint => ({ protocol, operation });

/** POST endpoints whose body names the model, by path. */
export const MODEL_ENDPOINTS: ReadonlyMap<string, ModelEndpoint> = new Map([
  ['/v1/chat/completions', endpoint(Protocol.OpenAi, 'chat')],
  ['/v1/completions', endpoint(Protocol.OpenAi, 'text_completion')],
  ['/v1/embeddings', endpoint(Protocol.OpenAi, 'embeddings')],
  ['/v1/responses', endpoint(Protocol.OpenAi, 'chat')],
  ['/api/generate', endpoint(Protocol.Ollama, 'text_completion')],
  ['/api/chat', endpoint(Protocol.Ollama, 'chat')],
  ['/api/embed', endpoint(Protocol.Ollama, 'embeddings')],
  ['/api/embeddings', endpoint(Protocol.Ollama, 'embeddings')],
  ['/api/show', endpoint(Protocol.Ollama, null)],
]);

/** A path of Ollama's own API: its answers' tokens are its counts alone (TokenCounter). */
export function ollamaApi(path: string): boolean {
  return MODEL_ENDPOINTS.get(path)?.protocol === Protocol.Ollama;
}
