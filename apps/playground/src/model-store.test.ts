// Cache Storage that is full: the download still loads, with a note, and what was kept before stays.
import { afterEach, describe, expect, it } from 'vitest';
import { fromUrl } from './model-store.js';

const g = globalThis as unknown as { caches?: unknown; fetch: typeof fetch };
const realFetch = g.fetch;
afterEach(() => {
  delete g.caches;
  g.fetch = realFetch;
});

/** A Cache Storage whose put fails with QuotaExceededError past `room` entries. */
function fullCache(room: number) {
  const kept = new Map<string, ArrayBuffer>();
  g.caches = {
    open: async () => ({
      match: async (url: string) => (kept.has(url) ? new Response(kept.get(url)) : undefined),
      put: async (url: string, res: Response) => {
        if (kept.size >= room) throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
        kept.set(url, await res.arrayBuffer());
      },
    }),
  };
  return kept;
}

describe('model store', () => {
  it('loads a model whose files do not fit in a full Cache Storage, saying so, and keeps what it had', async () => {
    const kept = fullCache(1);
    const body = (url: string) => new TextEncoder().encode(`contents of ${url.split('/').pop()}`);
    kept.set('https://hub.test/m/resolve/main/config.json', new TextEncoder().encode('{"kept": "before"}').buffer as ArrayBuffer);
    g.fetch = (async (url: string) => new Response(body(url).buffer as ArrayBuffer)) as typeof fetch;
    const notes: string[] = [];
    const files = await fromUrl('https://hub.test/m/resolve/main/', () => {}, (n) => notes.push(n));
    expect(new TextDecoder().decode(files.model)).toBe('contents of model.safetensors');
    expect(new TextDecoder().decode(files.config)).toBe('{"kept": "before"}'); // the copy kept before still serves
    expect(notes).toEqual([
      "The model loaded, but merges.txt, model.safetensors, vocab.json could not be kept in this browser (this site's storage is full), so it will download again next time; free some storage for this site to keep it.",
    ]);
  });
});
