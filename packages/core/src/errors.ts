/** An error caused by the user's input or environment: its message is one sentence saying what is wrong and what to do. */
export class GPT2Error extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GPT2Error';
  }
}

/** A backend could not allocate a buffer: `bytes` were asked. The model adds what it needs in all. */
export class OutOfMemoryError extends GPT2Error {
  constructor(message: string, readonly bytes: number) {
    super(message);
    this.name = 'OutOfMemoryError';
  }
}
