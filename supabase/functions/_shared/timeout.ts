// Waiting for something for a bounded time.

/**
 * `work`'s outcome, or the error `onTimeout` makes once `ms` have passed, whichever comes first. The work is
 * not stopped (onTimeout may ask it to stop); its later outcome is handled here, so it never goes unhandled.
 */
export async function withTimeout<T>(work: Promise<T>, ms: number, onTimeout: () => unknown): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(onTimeout()), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
