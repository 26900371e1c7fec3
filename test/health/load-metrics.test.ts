// The queue figures queue_aware reads from a model server's Prometheus page, on pages laid
// out as vLLM and llama.cpp's server write them.

import t from 'tap';
import { parseLoadMetrics } from '../../src/health/index.js';

t.test('vLLM: waiting and running add up over label sets; KV-cache use is the highest', async (t) => {
  const page = [
    '# HELP vllm:num_requests_running Number of requests in model execution batches.',
    '# TYPE vllm:num_requests_running gauge',
    'vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B"} 3.0',
    'vllm:num_requests_running{engine="1",model_name="meta-llama/Llama-3.1-8B"} 2.0',
    '# HELP vllm:num_requests_waiting Number of requests waiting to be processed.',
    '# TYPE vllm:num_requests_waiting gauge',
    'vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B"} 7.0',
    'vllm:num_requests_waiting_by_reason{reason="capacity"} 99',
    'vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B"} 0.42',
    'vllm:kv_cache_usage_perc{engine="1",model_name="meta-llama/Llama-3.1-8B"} 0.8',
    'vllm:prompt_tokens_total{model_name="m"} 1234',
    '',
  ].join('\n');
  t.same(parseLoadMetrics(page), { waiting: 7, running: 5, kvCacheUsage: 0.8 });
});

t.test('older vLLM: gpu_cache_usage_perc; a label value holding braces and spaces', async (t) => {
  const page = 'vllm:num_requests_waiting{model_name="a b}c"} 4 1700000000000\nvllm:gpu_cache_usage_perc{model_name="x"} 0.5\n';
  t.same(parseLoadMetrics(page), { waiting: 4, running: 0, kvCacheUsage: 0.5 });
});

t.test('llama.cpp: deferred is the queue, processing the running', async (t) => {
  const page = [
    '# HELP llamacpp:requests_processing Number of requests processing.',
    '# TYPE llamacpp:requests_processing gauge',
    'llamacpp:requests_processing 1',
    '# HELP llamacpp:requests_deferred Number of requests deferred.',
    '# TYPE llamacpp:requests_deferred gauge',
    'llamacpp:requests_deferred 6',
  ].join('\n');
  t.same(parseLoadMetrics(page), { waiting: 6, running: 1, kvCacheUsage: null });
});

t.test('a page without queue figures, or with bad values, gives no load', async (t) => {
  t.equal(parseLoadMetrics('# HELP process_cpu_seconds_total x\nprocess_cpu_seconds_total 12.5\n'), null);
  t.equal(parseLoadMetrics('vllm:num_requests_waiting NaN\nvllm:num_requests_running -1\n'), null);
  t.equal(parseLoadMetrics(''), null);
});
