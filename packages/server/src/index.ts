// @gpt2/server: an OpenAI-compatible completions server with continuous batching, for a Node app
// to mount (createServer(...).app is a fastify instance) and for `gpt2 serve` to run.
export { CompletionServer, createServer, type ServerOptions } from './app.js';
export { Engine, type ChoiceEvent, type EngineOptions, type RequestListener, type TokenLogprob } from './engine.js';
export { ApiError } from './errors.js';
export { parseCompletion, type CompletionRequest } from './request.js';
