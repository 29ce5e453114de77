/** An error caused by the user's input or environment: its message is one sentence saying what is wrong and what to do. */
export class GPT2Error extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GPT2Error';
  }
}
