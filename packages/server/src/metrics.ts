// Prometheus metrics for GET /metrics, in a registry of the server's own (several servers may share a process).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface ServerMetrics {
  registry: Registry;
  requests: Counter<'status'>;
  promptTokens: Counter;
  generationTokens: Counter;
  timeToFirstToken: Histogram;
  requestSeconds: Histogram;
}

export function createMetrics(state: { queueLength(): number; busySlots(): number; slots: number }): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'gpt2_' });
  const m: ServerMetrics = {
    registry,
    requests: new Counter({ name: 'gpt2_requests_total', help: 'Completion requests answered, by HTTP status', labelNames: ['status'], registers: [registry] }),
    promptTokens: new Counter({ name: 'gpt2_prompt_tokens_total', help: 'Prompt tokens of accepted requests', registers: [registry] }),
    generationTokens: new Counter({ name: 'gpt2_generation_tokens_total', help: 'Tokens generated', registers: [registry] }),
    timeToFirstToken: new Histogram({
      name: 'gpt2_time_to_first_token_seconds', help: 'From a request arriving to its first generated token',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: [registry],
    }),
    requestSeconds: new Histogram({
      name: 'gpt2_request_duration_seconds', help: 'From a request arriving to its last byte',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120], registers: [registry],
    }),
  };
  new Gauge({ name: 'gpt2_queue_length', help: 'Requests waiting for a slot', registers: [registry], collect() { this.set(state.queueLength()); } });
  new Gauge({ name: 'gpt2_busy_slots', help: 'Slots decoding a sequence', registers: [registry], collect() { this.set(state.busySlots()); } });
  new Gauge({ name: 'gpt2_slots', help: 'Slots (sequences decoded together)', registers: [registry], collect() { this.set(state.slots); } });
  return m;
}
