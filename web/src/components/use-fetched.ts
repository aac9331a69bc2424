// A value fetched from the API and fetched again whenever `deps` change (the panels pass a tick
// of the live stream's clock, so they follow the stream without timers of their own). An
// answer that arrives after the deps moved on is dropped; an error keeps the last value.

import { useEffect, useState } from "preact/hooks";
import { messageOf } from "../format.js";

export function useFetched<T>(fetch: () => Promise<T>, deps: readonly unknown[]): { value: T | null; error: string | null } {
  const [value, setValue] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let stale = false;
    fetch().then(
      (v) => {
        if (stale) return;
        setValue(v);
        setError(null);
      },
      (e: unknown) => !stale && setError(messageOf(e)),
    );
    return () => {
      stale = true;
    };
    // The caller names what the fetch depends on.
  }, deps);
  return { value, error };
}
