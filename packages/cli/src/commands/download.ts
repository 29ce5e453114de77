// gpt2 download: fetch a hub model into the Hugging Face cache and print where it is.
import { resolveModelDir } from '../model-source.js';
import { Reporter } from '../report.js';

export async function runDownload(id: string): Promise<void> {
  const dir = await resolveModelDir(id, new Reporter());
  process.stdout.write(dir + '\n');
}
