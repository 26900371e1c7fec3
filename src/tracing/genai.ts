// The GenAI semantic conventions sluice's spans follow. These attributes are still in
// the conventions' incubating set, which the package advises copying rather than
// importing (its `/incubating` entry may change in any minor release).

import { MODEL_ENDPOINTS } from '../genai-endpoints.js';

export const GEN_AI_OPERATION_NAME = 'gen_ai.operation.name';
export const GEN_AI_REQUEST_MODEL = 'gen_ai.request.model';
export const GEN_AI_RESPONSE_MODEL = 'gen_ai.response.model';
export const GEN_AI_USAGE_INPUT_TOKENS = 'gen_ai.usage.input_tokens';
export const GEN_AI_USAGE_OUTPUT_TOKENS = 'gen_ai.usage.output_tokens';
export const GEN_AI_RESPONSE_FINISH_REASONS = 'gen_ai.response.finish_reasons';

/** The GenAI operation of an upstream path (the path the model server is asked for); undefined for any other API (MLflow's /invocations, a health path). */
export function genAiOperation(upstreamPath: string): string | undefined {
  return MODEL_ENDPOINTS.get(upstreamPath)?.operation ?? undefined;
}
