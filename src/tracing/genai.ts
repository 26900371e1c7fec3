// The GenAI semantic conventions sluice's spans follow. These attributes are still in
// the conventions' incubating set, which the package advises copying rather than
// importing (its `/incubating` entry may change in any minor release).

export const GEN_AI_OPERATION_NAME = 'gen_ai.operation.name';
export const GEN_AI_REQUEST_MODEL = 'gen_ai.request.model';
export const GEN_AI_RESPONSE_MODEL = 'gen_ai.response.model';
export const GEN_AI_USAGE_INPUT_TOKENS = 'gen_ai.usage.input_tokens';
export const GEN_AI_USAGE_OUTPUT_TOKENS = 'gen_ai.usage.output_tokens';
export const GEN_AI_RESPONSE_FINISH_REASONS = 'gen_ai.response.finish_reasons';

/** gen_ai.operation.name of the OpenAI and Ollama endpoints (the path the model server is asked for). */
const OPERATIONS: ReadonlyMap<string, string> = new Map([
  ['/v1/chat/completions', 'chat'],
  ['/v1/responses', 'chat'],
  ['/v1/completions', 'text_completion'],
  ['/v1/embeddings', 'embeddings'],
  ['/api/chat', 'chat'],
  ['/api/generate', 'text_completion'],
  ['/api/embed', 'embeddings'],
  ['/api/embeddings', 'embeddings'],
]);

/** The GenAI operation of an upstream path; undefined for any other API (MLflow's /invocations, a health path). */
export function genAiOperation(upstreamPath: string): string | undefined {
  return OPERATIONS.get(upstreamPath);
}
